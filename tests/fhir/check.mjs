// Validates the record samples that `lgwan-agent`'s `fhir_samples` test writes
// (RENKEI_FHIR_SAMPLES): every file with the FHIR R4 validator of the npm `fhir`
// package (FHIR.js: structure, cardinality, types and required bindings of the R4 core
// definitions it ships), and every UCUM code, in the records and in `item-units.json`
// (the code `ucum_code` gives each unit of the MHLW item table), with `@lhncbc/ucum-lhc`.
// Fails on any error, on a catalog category without a sample, on an item-table unit
// without a checked code, and if the validators no longer reject known-bad input.
//
// Usage: node tests/fhir/check.mjs SAMPLES_DIR

import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import fhirPkg from 'fhir';
import ucumPkg from '@lhncbc/ucum-lhc';

const UCUM_SYSTEM = 'http://unitsofmeasure.org';
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const samples = process.argv[2];
if (!samples || !existsSync(samples)) {
  console.error(`usage: node check.mjs SAMPLES_DIR (\`${samples}\` does not exist)`);
  process.exit(2);
}

const fhir = new fhirPkg.Fhir();
const ucum = ucumPkg.UcumLhcUtils.getInstance();

/** The error messages of FHIR.js for one resource (warnings and infos are not errors). */
function fhirErrors(doc) {
  const result = fhir.validate(doc, { errorOnUnexpected: true });
  return result.messages
    .filter((m) => m.severity === 'error')
    .map((m) => `${m.resourceId ?? ''} ${m.location}: ${m.message}`);
}

/** The error of one UCUM code, or null when it is valid UCUM as written. */
function ucumError(code) {
  const r = ucum.validateUnitString(code, true);
  return r.status === 'valid' && r.ucumCode === code ? null : `\`${code}\`: ${r.status} ${r.msg.join(' ')}`;
}

/** Every `{system: UCUM, code}` in a JSON document, with its path. */
function ucumCodes(v, path = '', out = []) {
  if (Array.isArray(v)) v.forEach((x, i) => ucumCodes(x, `${path}[${i}]`, out));
  else if (v && typeof v === 'object') {
    if (v.system === UCUM_SYSTEM) out.push([path, v.code]);
    for (const [k, x] of Object.entries(v)) ucumCodes(x, `${path}.${k}`, out);
  }
  return out;
}

let passed = 0;
const failures = [];
function check(name, errors) {
  if (errors.length === 0) passed += 1;
  else failures.push(`${name}\n    ${errors.join('\n    ')}`);
}

// 0. The validators still reject what they must (else a green run proves nothing).
const canaryMed = {
  resourceType: 'Bundle', type: 'collection',
  entry: [{ resource: { resourceType: 'MedicationStatement', status: 'active', medicationCodeableConcept: { text: 'x' } } }],
};
const canaryObs = {
  resourceType: 'Bundle', type: 'collection',
  entry: [{ resource: { resourceType: 'Observation', status: 'done', code: { text: 'x' }, valueQuantity: { value: '1' } } }],
};
check('canary: FHIR.js rejects a MedicationStatement without subject', fhirErrors(canaryMed).length > 0 ? [] : ['accepted']);
check('canary: FHIR.js rejects a bad status and a string quantity', fhirErrors(canaryObs).length >= 2 ? [] : ['accepted']);
check('canary: ucum-lhc rejects the item table\'s `ml/min/1.73m2`', ucumError('ml/min/1.73m2') ? [] : ['accepted']);

// 1. Every catalog category has samples, and every sample validates.
const catalog = readFileSync(join(repo, 'policies', 'catalog.toml'), 'utf8');
// `evaluation.aggregate` is a signed table of statistics (docs/evaluation.md), not FHIR.
const categories = [...catalog.matchAll(/^\[categories\."([^"]+)"\]/gm)]
  .map((m) => m[1])
  .filter((c) => c !== 'evaluation.aggregate');
if (categories.length < 20) failures.push(`catalog: only ${categories.length} categories found`);
let files = 0;
for (const category of categories) {
  const folder = join(samples, category);
  const names = existsSync(folder) ? readdirSync(folder).filter((n) => n.endsWith('.json')).sort() : [];
  if (names.length === 0) {
    failures.push(`${category}: no sample`);
    continue;
  }
  for (const name of names) {
    files += 1;
    const file = join(category, name);
    let doc;
    try {
      doc = JSON.parse(readFileSync(join(samples, file), 'utf8'));
    } catch (e) {
      check(file, [`not JSON: ${e.message}`]);
      continue;
    }
    const errors = fhirErrors(doc);
    for (const [path, code] of ucumCodes(doc)) {
      const err = typeof code === 'string' ? ucumError(code) : 'no code';
      if (err) errors.push(`UCUM ${path}: ${err}`);
    }
    check(file, errors);
  }
}

// 2. Every unit of the MHLW item table maps to valid UCUM.
const table = readFileSync(join(repo, 'spec', 'tokutei-kenshin', 'XMLhc18tab.utf8.csv'), 'utf8');
const tableUnits = table.split('\n').slice(1)
  .map((line) => line.replace(/\r$/, '').split(','))
  .filter((cols) => (cols[3] ?? '').trim() && (cols[10] ?? '').trim())
  .map((cols) => [cols[3].trim(), cols[10].trim()]);
const mapped = new Map(JSON.parse(readFileSync(join(samples, 'item-units.json'), 'utf8'))
  .map((u) => [u.item, u]));
for (const [item, unit] of tableUnits) {
  const m = mapped.get(item);
  if (!m || m.unit !== unit) {
    failures.push(`item ${item} (${unit}): no ucum_code result`);
    continue;
  }
  const err = ucumError(m.code);
  check(`item ${item} unit ${unit} → ${m.code}`, err ? [err] : []);
}

for (const f of failures) console.log(`FAIL ${f}`);
console.log(`fhir check: ${files} records, ${tableUnits.length} item-table units, ${categories.length} categories`);
console.log(`${passed} passed, ${failures.length} failed`);
process.exit(failures.length === 0 ? 0 : 1);
