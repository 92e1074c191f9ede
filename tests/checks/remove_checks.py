#!/usr/bin/env python3
"""Removes each authorization check in turn and runs the tests that should catch it.

Every "cannot" of docs/authorization.md needs a test that fails once its check is gone.
This script takes one check at a time out of the source (an exact text replacement,
listed below), runs the named test suites, puts the file back and prints whether a test
failed ("caught") or not ("MISSED"). A missed check is a missing test.

    python3 tests/checks/remove_checks.py            # every check (about 25 min on 2 cores)
    python3 tests/checks/remove_checks.py read-kind  # some, by name
    python3 tests/checks/remove_checks.py --check    # only that every check's text is found

Run it from a clean work tree: it rewrites files in place and restores them, but an
interrupted run can leave one changed (`git checkout` it). PostgreSQL variants are
skipped unless RENKEI_TEST_PG_URL is set; the SQLite ones suffice to catch a removal.
"""

import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HUB = "cargo test -p renkei-hub"
AGENT = "cargo test -p lgwan-agent -p renkei-client"
CRYPTO = "cargo test -p renkei-crypto --test it grant::"
AGENT_IT = "cargo test -p lgwan-agent --test it"
E2E = "cargo build -q --workspace && cargo test -p renkei-e2e --test it -- malicious_hub_sqlite attacks::"


def off(cond):
    """A guard `if COND {` that never fires."""
    return (f"if {cond} {{", f"if false && ({cond}) {{")


# (name, file, text, replacement, which occurrence, test command)
CHECKS = [
    ("read-suspended", "hub/src/broker/records.rs", *off('first.caller_status != "active"'), 0, HUB),
    ("read-kind", "hub/src/broker/records.rs", *off("!RECIPIENTS.contains(&who.kind())"), 0, HUB),
    ("read-data-period", "hub/src/broker/records.rs", "if coverage::in_period(", "if true || coverage::in_period(", 0, HUB),
    ("read-policy", "hub/src/broker/records.rs", "if let Err(reason) = policy.decide(&me, who, &cover.purpose, &row.category) {", "let _ = policy.decide(&me, who, &cover.purpose, &row.category);\n    if let Err(reason) = Ok::<(), String>(()) {", 0, HUB),
    ("caller-suspended", "hub/src/broker/mod.rs", *off("p.suspended()"), 0, HUB),
    ("caller-kind", "hub/src/broker/mod.rs", *off("!kinds.contains(&who.kind())"), 0, HUB),
    ("upload-own-source", "hub/src/broker/ingest.rs", *off("h.source != me"), 0, HUB),
    ("upload-category", "hub/src/broker/ingest.rs", *off("!may_publish(who.kind(), &h.category)"), 0, HUB),
    ("revocation-list-path", "hub/src/api/mod.rs", *off('bounded::participant("path", &format!("{kind}:{id}"))? != who'), 0, HUB),
    ("keys-path", "hub/src/api/mod.rs", *off('bounded::participant("path", &format!("{kind}:{id}"))? != who'), 1, HUB),
    ("keys-enrollment-source", "hub/src/api/mod.rs", *off("k.enrollment_key.is_some() && who.kind() != ParticipantKind::Source"), 0, HUB),
    ("keys-statement", "hub/src/api/mod.rs", "        if st.participant != who.to_string()", "        if false && st.participant != who.to_string()", 0, HUB),
    ("revocation-list-signer", "hub/src/broker/revocations.rs", *off("&signer != who"), 0, HUB),
    ("portal-csrf", "hub/src/portal.rs", *off("!csrf_ok(headers, &f.csrf)"), 0, HUB),
    ("evaluation-recipient", "hub/src/broker/evaluation.rs", "    if let Err(why) = allowed {", "    let _ = allowed;\n    if let Err(why) = Ok::<(), String>(()) {", 0, HUB),
    ("consent-policy", "hub/src/broker/consents.rs", *off("!decision.allowed"), 0, HUB),
    ("revoke-visible", "hub/src/broker/consents.rs", *off("!visible"), 0, HUB),
    ("revoke-source-owner", "hub/src/broker/consents.rs", "subjects::owner(conn, &c.terms.subject).await?.as_deref() == Some(&me)\n        }\n        ParticipantKind::Phr", "subjects::owner(conn, &c.terms.subject).await?.is_some()\n        }\n        ParticipantKind::Phr", 0, HUB),
    ("revoke-app-linked", "hub/src/broker/consents.rs", "ParticipantKind::Phr => subjects::is_linked(conn, &me, &c.terms.subject).await?,", "ParticipantKind::Phr => true,", 0, HUB),
    ("claim-owner", "hub/src/broker/subjects.rs", *off("known.iter().any(|(_, owner)| owner != source)"), 0, HUB),
    ("app-enrolled-resident", "hub/src/broker/subjects.rs", "FROM hub_pseudonyms p JOIN hub_enrollment_links l \\\n         ON l.app = p.recipient AND l.subject_token = p.subject_token \\\n", "FROM hub_pseudonyms p \\\n", 0, HUB),
    ("resolve-owner", "hub/src/broker/resolve.rs", *off("subjects::owner(conn, &token).await?.as_deref() != Some(who.to_string().as_str())"), 0, HUB),
    ("link-owner", "hub/src/broker/links.rs", "FROM hub_subjects WHERE subject_token = $1 AND owner <> $2\",\n            vec![canon, who],", "FROM hub_subjects WHERE 1 = 0 AND subject_token = $1 AND owner <> $2\",\n            vec![canon, who],", 0, HUB),
    ("agent-release-list", "lgwan-agent/src/agent.rs", *off("!self.config.releases(&recipient, &r.purpose)"), 0, AGENT),
    ("agent-policy", "lgwan-agent/src/agent.rs", "        if !decision.allowed {\n            return Err(Error::Refused(format!(\n                \"the policies deny it", "        if false && !decision.allowed {\n            return Err(Error::Refused(format!(\n                \"the policies deny it", 0, AGENT),
    ("agent-signer-kind", "lgwan-agent/src/agent.rs", "} else if checked.signer.kind() == ParticipantKind::Phr {", "} else if true {", 0, AGENT),
    ("agent-stated-key", "lgwan-agent/src/agent.rs", "let key = verified_recipient_key(client, r)?;", "let key = r.recipient_key.clone();", 0, AGENT),
    ("agent-list-signer", "client/src/consent.rs", *off("&by != signer"), 0, AGENT + " && cargo test -p lgwan-agent --test it -- revocations"),
    ("agent-list-age", "client/src/consent.rs", *off("age > max_age"), 0, AGENT + " && cargo test -p lgwan-agent --test it -- revocations"),
    ("statement-owner", "client/src/transport/mod.rs", *off("&keys.participant != who"), 0, AGENT),
    ("grant-own-record", "client/src/source.rs", *off("header.record_id != rid || header.source != me"), 0, AGENT),
    ("consent-recipient", "client/src/consent.rs", *off("t.recipient != request.recipient"), 0, AGENT),
    ("consent-purpose", "client/src/consent.rs", *off("t.purpose != request.purpose"), 0, AGENT),
    ("agent-resident", "lgwan-agent/src/agent.rs", *off("!names_the_resident"), 0, E2E),
    ("agent-counter-revoked", "lgwan-agent/src/agent.rs", *off("outbox.statement_void(&checked.id).await?"), 0, E2E),
    ("agent-app-revoked", "lgwan-agent/src/agent.rs", *off("named_now || outbox.app_revoked(&signer, &checked.id).await?"), 0, E2E),
    ("grant-record", "crypto/src/grant.rs", 'length_prefixed(&[b"renkei key-grant v2", record_id.as_str().as_bytes()])', 'length_prefixed(&[b"renkei key-grant v2"])', 0, CRYPTO),
    ("grant-recipient", "crypto/src/grant.rs", 'length_prefixed(&[b"renkei key-grant v2", recipient_id.as_bytes()])', 'length_prefixed(&[b"renkei key-grant v2"])', 0, CRYPTO),
    ("agent-identity-conflict", "lgwan-agent/src/pipeline.rs", "Ok((token, _)) if book.is_conflict(&token) =>", "Ok((token, _)) if false && book.is_conflict(&token) =>", 0, AGENT_IT),
    ("agent-survey-headers", "lgwan-agent/src/pipeline.rs", "                let (person, resident) = match input.parse_header() {", "                let (person, resident) = match input.parse() {", 0, AGENT_IT),
    ("agent-survey-agrees", "lgwan-agent/src/pipeline.rs", "if surveyed && !book.agrees(", "if false && surveyed && !book.agrees(", 0, AGENT_IT),
    ("cda-nothing-after-body", "lgwan-agent/src/cda.rs", "        if state.body_opened {", "        if false && state.body_opened {", 0, "cargo test -p lgwan-agent --lib cda::"),
    ("consent-sizes", "hub/src/broker/consents.rs", "    renkei_consent::validate_sizes(&body.categories, &body.granted_by, body.evidence.as_deref())\n        .map_err(consent_error)?;", "", 0, HUB + " --test it -- too_many_categories"),
    ("grant-copy-id-taken", "hub/src/broker/grants.rs", *off("inserted == 0"), 0, HUB + " --test it -- copy_id_used_twice"),
    ("cert-expiry-open-connection", "hub/src/server.rs", *off("rustls_pki_types::UnixTime::now().as_secs() >= self.expires"), 0, HUB + " --test it -- mtls::"),
    ("cda-cut-short", "lgwan-agent/src/cda.rs", *off("!state.stack.is_empty()"), 0, "cargo test -p lgwan-agent --lib cda::"),
    ("cda-id-twice", "lgwan-agent/src/cda.rs", *off("slot.is_some()"), 0, "cargo test -p lgwan-agent --lib cda::"),
    ("csv-column-twice", "lgwan-agent/src/tabular.rs", *off("!twice.is_empty()"), 0, AGENT_IT + " tabular::"),
    ("witness-own-name", "hub/src/audit/log.rs", *off("verifier.name() != own"), 0, HUB + " --test it -- tlog::"),
    ("audit-salted-commitments", "hub/src/audit.rs", "    if e.subject.is_empty() {\n        return None;", "    if true || e.subject.is_empty() {\n        return None;", 0, HUB + " --test it -- portal::history_entries"),
    ("cda-unit-ucum", "lgwan-agent/src/cda/value.rs", "u.len() > MAX_UNIT || !u.bytes().all(|b| b.is_ascii_graphic())", "false && u.len() > MAX_UNIT", 0, "cargo test -p lgwan-agent --lib cda::"),
    ("outbox-reused-id", "lgwan-agent/src/outbox/mod.rs", *off("!same"), 0, "cargo test -p lgwan-agent --lib outbox::"),
    ("audit-unsalted-commitment", "hub/src/audit.rs", *off("salt.is_none() && (looks_committed(&e.subject) || looks_committed(&e.object))"), 0, HUB + " --test it -- tamper::audit_tamper"),
    ("zip-count-wrapped", "lgwan-agent/src/archive/zipdir.rs", "return self.more_than_declared().err().map(Err);", "return None;", 0, "cargo test -p lgwan-agent --lib zipdir::"),
    ("client-walk-replay", "client/src/evaluation.rs", "Some(next) if new && Some(&next)", "Some(next) if Some(&next)", 0, "cargo test -p renkei-client --lib evaluation::"),
    ("client-walk-cursor", "client/src/evaluation.rs", "Some(next) if new && Some(&next) != after.as_ref()", "Some(next) if new", 0, "cargo test -p renkei-client --lib evaluation::"),
    ("client-walk-page-size", "client/src/evaluation.rs", *off("page.reports.len() > renkei_protocol::evaluation::PAGE_REPORTS"), 0, "cargo test -p renkei-client --lib evaluation::"),
    ("client-other-signer-revoked", "client/src/source.rs", "Some(Ok(revoked)) if !revoked.contains(&statement) => Ok(()),", "Some(Ok(_)) => Ok(()),", 0, "cargo build -q --workspace && cargo test -p renkei-e2e --test it -- app_release"),
    ("agent-counter-unconfirmed", "lgwan-agent/src/outbox/consents.rs", "AND (revoked_at IS NOT NULL OR consent_id IS NULL)", "AND (revoked_at IS NOT NULL)", 0, "cargo test -p lgwan-agent --lib answer_tests"),
    ("hub-cli-missing-database", "internet-hub/src/cli.rs", "        && !file.exists()\n", "        && false\n", 0, "cargo build -q --workspace && cargo test -p renkei-e2e --test it -- admin_cli"),
    ("agent-grant-pages-bounded", "lgwan-agent/src/sync.rs", "for _ in 0..GRANT_PAGES_PER_ROUND {", "for _ in 0.. {", 0, "cargo test -p lgwan-agent --lib sync::"),
    ("client-pull-no-new", "client/src/pull.rs", "        if idle == IDLE_PAGES {\n            break;\n        }\n", "", 0, "cargo test -p renkei-client --lib pull::"),
    ("client-pull-page-size", "client/src/pull.rs", *off("page.items.len() > page_size as usize"), 0, "cargo test -p renkei-client --lib pull::"),
    ("client-events-bounded", "client/src/events.rs", "for _ in 0..EVENT_PAGES {", "for _ in 0.. {", 0, "cargo test -p renkei-client --lib events::"),
    ("agent-witness-history-once", "lgwan-agent/src/outbox/witness.rs", "        if !again {\n", "        if true {\n", 0, "cargo test -p lgwan-agent --lib witness::"),
    ("status-escapes-hub-words", "lgwan-agent/src/daemon.rs", "n.at, renkei_client::error::printable(&n.value))", "n.at, n.value)", 0, "cargo test -p lgwan-agent --lib daemon::"),
    ("registry-key-checked", "hub/src/registry.rs", "            renkei_crypto::grant::RecipientPublicKey::from_base64(key).map_err(", "            Ok::<(), renkei_crypto::Error>(()).map_err(", 0, "cargo build -q --workspace && cargo test -p renkei-e2e --test it -- admin_cli"),
    ("hub-cli-broken-pipe", "internet-hub/src/main.rs", "std::process::exit(code);", "panic!(\"failed printing to stdout: {e}\");", 0, "cargo build -q -p internet-hub && cargo test -p renkei-hub --test it -- a_closed_output_pipe"),
    ("enroll-replayed-claim", "lgwan-agent/src/enroll/mod.rs", *off("outbox.enrollment_digest_seen(&digest).await?"), 0, "cargo test -p lgwan-agent --test it -- enroll::"),
    ("agent-list-unconfirmed", "lgwan-agent/src/outbox/consents.rs", "OR (consent_id IS NULL AND unixepoch(signed_at) < ? - ?)", "OR (0 AND unixepoch(signed_at) < ? - ?)", 0, "cargo test -p lgwan-agent --lib answer_tests"),
    ("agent-app-revoked-memory", "lgwan-agent/src/agent.rs", "if named_now || outbox.app_revoked(&signer, &checked.id).await? {", "if named_now {", 0, AGENT),
    ("source-statement-committed", "hub/src/broker/statements.rs", "t.resident.starts_with(COMMITTED_PREFIX) && t.names_token(&body.subject)", "t.names_token(&body.subject)", 0, "cargo test -p renkei-hub --test it -- statements::"),
    ("counter-statement-commits", "client/src/consent.rs", "renkei_crypto::token::SubjectToken::parse(&resident).is_ok() {", "false && renkei_crypto::token::SubjectToken::parse(&resident).is_ok() {", 0, "cargo build -q --workspace && cargo test -p renkei-e2e --test it -- app_release::"),
    ("key-statement-verified", "hub/src/api/mod.rs", "        st.verify(&hub.participant_ca, hub.now())\n            .map_err(|e| Error::bad_request_from(\"statement\", e))?;\n", "", 0, "cargo test -p renkei-hub --test it -- statements::"),
    ("key-statement-small", "hub/src/api/mod.rs", *off("st.certificate.len() > MAX_STATEMENT_CERTIFICATE"), 0, "cargo test -p renkei-hub --test it -- statements::"),
    ("grant-requests-back-off", "hub/src/broker/grants.rs", "    mark_served(&mut tx, &served, now).await?;\n", "", 0, "cargo test -p renkei-hub --test it -- flow::"),
    ("clinic-patient-consent-in-force", "hub/src/broker/subjects.rs", "         AND p.pseudonym = $2 AND EXISTS (SELECT 1 FROM consents c \\\n", "         AND p.pseudonym = $2 AND 1 = 1 OR 0 = 1 AND EXISTS (SELECT 1 FROM consents c \\\n", 0, "cargo test -p renkei-hub --test it -- clinic_sources::"),
    ("enrollment-queue-bounded", "hub/src/broker/enroll.rs", *off("waiting >= MAX_PENDING_PER_APP"), 0, "cargo test -p renkei-hub --test it -- enroll::"),
    ("connections-per-address", "hub/src/server.rs", "if *n >= max.max(1) {", "if false && *n >= max.max(1) {", 0, HUB + " --test it -- mtls::one_address"),
    ("portal-failure-window", "hub/src/portal.rs", "failures = CASE WHEN updated_at < $5 THEN 1 ELSE failures + 1 END", "failures = failures + 1", 0, HUB + " --test it -- portal::"),
    ("portal-reason-escaped", "hub/src/broker/consents.rs", "        actor: \"portal\".into(),\n        reason: bounded::text(reason, 200),", "        actor: \"portal\".into(),\n        reason: reason.to_owned(),", 0, HUB + " --test it -- portal::"),
    ("park-busy-answer", "hub/src/park.rs", "self.busy.load(Ordering::Acquire) == 0", "true", 0, HUB + " --lib -- park::"),
    ("park-idle-timeout", "hub/src/park.rs", "tokio::time::timeout_at(deadline, io.socket.tcp().readable())", "tokio::time::timeout(Duration::MAX, io.socket.tcp().readable())", 0, HUB + " --test it -- mtls::an_idle"),
    ("park-wake-when-idle", "hub/src/park.rs", "                w.wake();", "                drop(w);", 0, HUB + " --lib -- park::"),
    ("shutdown-connection-close", "hub/src/server.rs", *off("activity.closing()"), 0, HUB + " --test it -- mtls::an_answer_during"),
    ("park-deadline-kept", "hub/src/park.rs", "        self.answered = unread.is_empty();\n        self.parked = false;", "        self.answered = unread.is_empty();\n        self.answered_at = Instant::now();\n        self.parked = false;", 0, HUB + " --lib -- park::"),
    ("park-unflushed-tail", "hub/src/park.rs", "        self.wrote = true;\n        self.answered = false;\n    }", "        self.wrote = true;\n    }", 0, HUB + " --lib -- park::"),
    ("portal-ended-not-failure", "hub/src/portal.rs", "Err(crate::error::Error::Conflict(_)) => Ok(already_ended(lang)),", "Err(crate::error::Error::Conflict(_)) => wrong_code(&st, lang, &key).await,", 0, HUB + " --test it -- portal::"),
]


# A removal can make a test wait forever (a lock, a retry loop): that counts as noticed.
LIMIT = 600


def run_limited(command):
    """Runs `command`, or kills it and everything it started after LIMIT seconds (None)."""
    child = subprocess.Popen(
        command, shell=True, cwd=ROOT, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        out, err = child.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return None
    return subprocess.CompletedProcess(command, child.returncode, out, err)


def main():
    # An interrupted run still puts the file back (SystemExit runs the `finally`).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    only = set(sys.argv[1:]) - {"--check"}
    dry = "--check" in sys.argv
    missed = 0
    for name, path, text, replacement, nth, command in CHECKS:
        if only and name not in only:
            continue
        file = os.path.join(ROOT, path)
        with open(file, encoding="utf-8") as f:
            original = f.read()
        parts = original.split(text)
        if len(parts) < nth + 2:
            print(f"{name}: the check's text is no longer in {path}: update this list")
            missed += 1
            continue
        changed = text.join(parts[: nth + 1]) + replacement + text.join(parts[nth + 1 :])
        if dry:
            continue
        start = time.time()
        try:
            with open(file, "w", encoding="utf-8") as f:
                f.write(changed)
            run = run_limited(command)
        finally:
            with open(file, "w", encoding="utf-8") as f:
                f.write(original)
        if run is None:
            print(f"{name}: caught, a test hung for {LIMIT} s without it")
            continue
        out = run.stdout + run.stderr
        failed = [l.split()[1] for l in out.splitlines() if l.startswith("test ") and l.endswith("FAILED")]
        if not failed and "test result: FAILED" in out:
            failed = ["(see the test output)"]
        took = f"{time.time() - start:.0f} s"
        if "could not compile" in out:
            print(f"{name}: the change does not compile: update this list ({took})")
            missed += 1
        elif failed:
            print(f"{name}: caught by {', '.join(failed[:3])} ({took})")
        else:
            print(f"{name}: MISSED, no test failed ({took})")
            missed += 1
        sys.stdout.flush()
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
