//! Cedar: parsing and validating the schema and policy files, and evaluating one category at a time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, ResourceConstraint, RestrictedExpression, Schema, ValidationMode, Validator,
};

use crate::catalog::Catalog;
use crate::error::{Error, Result, diagnostic_line, diagnostic_message, line_of};

/// A source file handed to the engine: its name for errors and its text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceFile<'a> {
    /// The name reported in errors (a path, or `policies/x.cedar` when embedded).
    pub(crate) name: &'a str,
    /// The file's contents.
    pub(crate) text: &'a str,
}

/// The two things a participant can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Hold a new consent.
    Grant,
    /// Read records under a consent.
    Read,
}

impl Action {
    fn id(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Read => "read",
        }
    }
}

/// Who is asking, as the policies see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Principal<'a> {
    /// `kind:id`.
    pub(crate) id: &'a str,
    /// The participant kind.
    pub(crate) kind: &'a str,
    /// Suspended in the registry.
    pub(crate) suspended: bool,
}

/// The Cedar side of [`Policies`](crate::Policies): schema, policies and category entities.
#[derive(Debug)]
pub(crate) struct Engine {
    schema: Schema,
    policies: PolicySet,
    categories: Entities,
    reasons: HashMap<PolicyId, String>,
    participant_type: EntityTypeName,
    category_type: EntityTypeName,
    action_type: EntityTypeName,
}

/// The result of evaluating one category: allowed with the permitting policies,
/// or denied with the reasons.
pub(crate) type Outcome = std::result::Result<Vec<String>, Vec<String>>;

fn type_name(name: &str, file: &str) -> Result<EntityTypeName> {
    EntityTypeName::from_str(name).map_err(|err| Error::Schema {
        file: file.to_owned(),
        line: 1,
        message: format!("bad entity type `{name}`: {err}"),
    })
}

impl Engine {
    /// Parses and validates `schema` and `files` against each other and the catalog.
    pub(crate) fn new(
        catalog: &Catalog,
        schema_file: SourceFile<'_>,
        files: &[SourceFile<'_>],
    ) -> Result<Self> {
        let schema_error = |line, message| Error::Schema {
            file: schema_file.name.to_owned(),
            line,
            message,
        };
        let (schema, _warnings) =
            Schema::from_cedarschema_str(schema_file.text).map_err(|err| {
                schema_error(
                    diagnostic_line(schema_file.text, &err),
                    diagnostic_message(&err),
                )
            })?;
        let participant_type = type_name("Participant", schema_file.name)?;
        let category_type = type_name("Category", schema_file.name)?;
        let group_type = type_name("CategoryGroup", schema_file.name)?;
        let action_type = type_name("Action", schema_file.name)?;

        let mut groups = BTreeMap::new();
        let mut entities = Vec::new();
        for category in catalog.categories() {
            let group = EntityUid::from_type_name_and_id(
                group_type.clone(),
                EntityId::new(&category.group),
            );
            groups.insert(category.group.clone(), group.clone());
            let uid = EntityUid::from_type_name_and_id(
                category_type.clone(),
                EntityId::new(&category.name),
            );
            entities.push(Entity::new_no_attrs(uid, HashSet::from([group])));
        }
        entities.extend(
            groups
                .into_values()
                .map(|uid| Entity::new_no_attrs(uid, HashSet::new())),
        );
        let categories = Entities::from_entities(entities, Some(&schema))
            .map_err(|err| schema_error(1, format!("catalog categories do not fit: {err}")))?;

        let validator = Validator::new(schema.clone());
        let mut policies = PolicySet::new();
        let mut reasons = HashMap::new();
        for file in files {
            let policy_error = |line, message| Error::Policy {
                file: file.name.to_owned(),
                line,
                message,
            };
            let parsed = PolicySet::from_str(file.text).map_err(|err| {
                policy_error(diagnostic_line(file.text, &err), diagnostic_message(&err))
            })?;
            if parsed.templates().next().is_some() {
                return Err(policy_error(1, "templates are not supported".to_owned()));
            }
            let result = validator.validate(&parsed, ValidationMode::Strict);
            if let Some(err) = result.validation_errors().next() {
                return Err(policy_error(
                    diagnostic_line(file.text, err),
                    diagnostic_message(err),
                ));
            }
            let stem = file_stem(file.name);
            let mut local: Vec<&Policy> = parsed.policies().collect();
            // The parser names policies `policy0`, `policy1`, ... in file order; sort
            // them back into that order (shorter ids first) so errors are stable.
            local.sort_by_key(|policy| {
                let id = policy.id().to_string();
                (id.len(), id)
            });
            for policy in local {
                check_literals(catalog, policy, file)?;
                let Some(local_id) = policy.annotation("id") else {
                    let line = policy
                        .to_cedar()
                        .and_then(|source| file.text.find(source.trim()))
                        .map_or(1, |offset| line_of(file.text, offset));
                    return Err(policy_error(
                        line,
                        "every policy needs an `@id(\"...\")` annotation".to_owned(),
                    ));
                };
                let id = PolicyId::new(format!("{stem}/{local_id}"));
                let reason = policy.annotation("reason").unwrap_or(local_id).to_owned();
                let line = file
                    .text
                    .find(&format!("@id(\"{local_id}\")"))
                    .map_or(1, |offset| line_of(file.text, offset));
                policies
                    .add(policy.new_id(id.clone()))
                    .map_err(|err| policy_error(line, format!("policy `{id}`: {err}")))?;
                reasons.insert(id, reason);
            }
        }
        Ok(Self {
            schema,
            policies,
            categories,
            reasons,
            participant_type,
            category_type,
            action_type,
        })
    }

    /// The number of policies loaded.
    pub(crate) fn len(&self) -> usize {
        self.reasons.len()
    }

    /// Evaluates `action` by `principal` on one `category` with `context`.
    /// Any error is a denial.
    pub(crate) fn evaluate(
        &self,
        principal: Principal<'_>,
        action: Action,
        category: &str,
        context: Vec<(String, RestrictedExpression)>,
    ) -> Outcome {
        let fail = |what: &str, err: &dyn std::fmt::Display| Err(vec![format!("{what}: {err}")]);
        let principal_uid = EntityUid::from_type_name_and_id(
            self.participant_type.clone(),
            EntityId::new(principal.id),
        );
        let attrs = HashMap::from([
            (
                "kind".to_owned(),
                RestrictedExpression::new_string(principal.kind.to_owned()),
            ),
            (
                "suspended".to_owned(),
                RestrictedExpression::new_bool(principal.suspended),
            ),
        ]);
        let participant = match Entity::new(principal_uid.clone(), attrs, HashSet::new()) {
            Ok(entity) => entity,
            Err(err) => return fail("cannot build the participant entity", &err),
        };
        let entities = match self
            .categories
            .clone()
            .add_entities([participant], Some(&self.schema))
        {
            Ok(entities) => entities,
            Err(err) => return fail("cannot build the request entities", &err),
        };
        let action_uid =
            EntityUid::from_type_name_and_id(self.action_type.clone(), EntityId::new(action.id()));
        let resource =
            EntityUid::from_type_name_and_id(self.category_type.clone(), EntityId::new(category));
        let context = match Context::from_pairs(context) {
            Ok(context) => context,
            Err(err) => return fail("cannot build the request context", &err),
        };
        let request = match cedar_policy::Request::new(
            principal_uid,
            action_uid,
            resource,
            context,
            Some(&self.schema),
        ) {
            Ok(request) => request,
            Err(err) => return fail("the request does not fit the schema", &err),
        };
        let response = Authorizer::new().is_authorized(&request, &self.policies, &entities);
        let diagnostics = response.diagnostics();
        let errors: Vec<String> = diagnostics
            .errors()
            .map(|err| format!("evaluation failed: {err}"))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut fired: Vec<String> = diagnostics
            .reason()
            .map(|id| match self.reasons.get(id) {
                Some(reason) => format!("`{id}`: {reason}"),
                None => format!("`{id}`"),
            })
            .collect();
        fired.sort();
        match response.decision() {
            cedar_policy::Decision::Allow if !fired.is_empty() => Ok(fired
                .into_iter()
                .map(|reason| format!("permitted by {reason}"))
                .collect()),
            cedar_policy::Decision::Allow => Err(vec!["allowed by no policy".to_owned()]),
            cedar_policy::Decision::Deny if fired.is_empty() => Err(vec![format!(
                "no policy lets a `{}` participant do this",
                principal.kind
            )]),
            cedar_policy::Decision::Deny => Err(fired
                .into_iter()
                .map(|reason| format!("forbidden by {reason}"))
                .collect()),
        }
    }
}

/// The file name without directories and extension, used to prefix policy ids.
fn file_stem(name: &str) -> &str {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.strip_suffix(".cedar").unwrap_or(base)
}

/// Refuses a policy that names a category or group the catalog does not know.
fn check_literals(catalog: &Catalog, policy: &Policy, file: &SourceFile<'_>) -> Result<()> {
    let mut literals = policy.entity_literals();
    match policy.resource_constraint() {
        ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => literals.push(uid),
        ResourceConstraint::IsIn(_, uid) => literals.push(uid),
        ResourceConstraint::Any | ResourceConstraint::Is(_) => {}
    }
    for uid in literals {
        let name = uid.id().unescaped();
        let known = match uid.type_name().to_string().as_str() {
            "Category" => catalog.is_category(name),
            "CategoryGroup" => catalog.categories().any(|category| category.group == name),
            _ => true,
        };
        if !known {
            let line = file
                .text
                .find(&format!("\"{name}\""))
                .map_or(1, |offset| line_of(file.text, offset));
            return Err(Error::Policy {
                file: file.name.to_owned(),
                line,
                message: format!("`{uid}` is not a category of the catalog"),
            });
        }
    }
    Ok(())
}
