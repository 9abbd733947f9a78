//! The access policy of SPEC §2 and the consent levels of SPEC §3, as casbin files an
//! operator can edit (`config/model.conf`, `config/policy.csv`).
//!
//! [`CasbinPolicy`] loads the files, checks them (a file that does not parse, a rule that
//! names an unknown role, action or value, or a policy that permits nothing is refused
//! with a [`PolicyError`]), asks casbin about every request there is
//! ([`care_application::access::all_requests`]) and compiles the answers into a
//! [`DecisionTable`]. An access decision is then an array lookup; casbin is not on the
//! request path. [`CasbinPolicy::reload`] re-reads the files and swaps the table in one
//! step, keeping the policy in force when the new files are refused.

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use care_application::access::{DecisionTable, all_requests};
use care_application::{AccessPolicy, AccessRequest, Decision};
use care_consent::ConsentLevel;
use care_kernel::{Action, BasisKind, Role};
use care_person::VitalStatus;
use casbin::function_map::{OperatorFunction, dynamic_to_str};
use casbin::rhai::Dynamic;
use casbin::{CoreApi, DefaultModel, Enforcer, Model, StringAdapter};
use thiserror::Error;

/// The shipped model, as in `config/model.conf`.
pub const DEFAULT_MODEL: &str = include_str!("../config/model.conf");
/// The shipped policy, as in `config/policy.csv`.
pub const DEFAULT_POLICY: &str = include_str!("../config/policy.csv");

/// The request the application sends, in order. The model's `request_definition` must
/// be exactly this.
pub const REQUEST_FIELDS: [&str; 6] = ["role", "action", "purpose", "consent", "vital", "basis"];
/// The `purpose` of a direct-care request.
pub const DIRECT_CARE: &str = "direct_care";
/// The `purpose` of any other declared purpose.
pub const OTHER_PURPOSE: &str = "other";
/// `consent`, `vital` and `basis` when there is no such value (no person, no basis).
pub const NONE: &str = "none";
/// In a rule, any value.
pub const ANY: &str = "*";

/// Why a policy could not be loaded or evaluated. Every variant names the file.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The model is not a usable casbin model for this application.
    #[error("{origin}: not a usable access model: {message}")]
    Model {
        /// The model file.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A line of the policy is wrong.
    #[error("{origin}, line {line}: {message}")]
    Rule {
        /// The policy file.
        origin: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// casbin failed while deciding a request with this model and policy.
    #[error("{origin}: casbin could not decide {request}: {message}")]
    Evaluation {
        /// The model and policy files.
        origin: String,
        /// The request, as casbin saw it.
        request: String,
        /// casbin's error.
        message: String,
    },
    /// The policy permits no request at all: almost certainly an editing accident.
    #[error("{origin}: the policy permits nothing at all; it was not loaded")]
    PermitsNothing {
        /// The model and policy files.
        origin: String,
    },
}

/// Where a policy comes from.
#[derive(Debug, Clone)]
enum PolicySource {
    Files { model: PathBuf, policy: PathBuf },
    Text { model: String, policy: String },
}

impl PolicySource {
    async fn read(&self) -> Result<Texts, PolicyError> {
        match self {
            PolicySource::Files { model, policy } => Ok(Texts {
                model_origin: model.display().to_string(),
                model: read(model).await?,
                policy_origin: policy.display().to_string(),
                policy: read(policy).await?,
            }),
            PolicySource::Text { model, policy } => Ok(Texts {
                model_origin: "built-in model.conf".to_owned(),
                model: model.clone(),
                policy_origin: "built-in policy.csv".to_owned(),
                policy: policy.clone(),
            }),
        }
    }
}

async fn read(path: &Path) -> Result<String, PolicyError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })
}

struct Texts {
    model_origin: String,
    model: String,
    policy_origin: String,
    policy: String,
}

/// One loaded policy: the enforcer and the table compiled from it.
struct Loaded {
    origin: String,
    enforcer: Enforcer,
    table: DecisionTable,
    rules: usize,
    permitted: usize,
}

/// The access policy, from casbin files. Decisions come from a table compiled at load;
/// [`CasbinPolicy::enforce_raw`] asks casbin itself.
pub struct CasbinPolicy {
    source: PolicySource,
    current: RwLock<Arc<Loaded>>,
}

impl fmt::Debug for CasbinPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loaded = self.loaded();
        f.debug_struct("CasbinPolicy")
            .field("origin", &loaded.origin)
            .field("rules", &loaded.rules)
            .field("permitted_requests", &loaded.permitted)
            .finish_non_exhaustive()
    }
}

impl CasbinPolicy {
    /// Loads a model and a policy from files (the deployed, operator-edited copies).
    pub async fn load(model: &Path, policy: &Path) -> Result<Self, PolicyError> {
        Self::from_source(PolicySource::Files {
            model: model.to_owned(),
            policy: policy.to_owned(),
        })
        .await
    }

    /// Loads the shipped model and policy (built into the binary).
    pub async fn load_default() -> Result<Self, PolicyError> {
        Self::from_text(DEFAULT_MODEL, DEFAULT_POLICY).await
    }

    /// Loads a model and a policy given as text.
    pub async fn from_text(model: &str, policy: &str) -> Result<Self, PolicyError> {
        Self::from_source(PolicySource::Text {
            model: model.to_owned(),
            policy: policy.to_owned(),
        })
        .await
    }

    async fn from_source(source: PolicySource) -> Result<Self, PolicyError> {
        let loaded = build(source.read().await?).await?;
        Ok(Self {
            source,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// Re-reads the files, checks and compiles them, and puts the new policy in force in
    /// one step. When they are refused, the error says why and the policy in force
    /// stays. (A policy loaded from text is compiled again from the same text.)
    pub async fn reload(&self) -> Result<(), PolicyError> {
        let loaded = build(self.source.read().await?).await?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded);
        Ok(())
    }

    /// Asks casbin directly, without the compiled table: whether the policy permits the
    /// request (no reason for a refusal: that is derived, see
    /// [`care_application::access::decide_with`]).
    pub fn enforce_raw(&self, request: &AccessRequest) -> Result<bool, PolicyError> {
        let loaded = self.loaded();
        enforce(&loaded.enforcer, request).map_err(|message| PolicyError::Evaluation {
            origin: loaded.origin.clone(),
            request: request_values(request).join(", "),
            message,
        })
    }

    /// How many `p` and `g` rules the policy in force has.
    pub fn rule_count(&self) -> usize {
        self.loaded().rules
    }

    /// How many of the requests there are the policy in force permits.
    pub fn permitted_count(&self) -> usize {
        self.loaded().permitted
    }

    fn loaded(&self) -> Arc<Loaded> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl AccessPolicy for CasbinPolicy {
    fn decide(&self, request: &AccessRequest) -> Decision {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .table
            .decide(request)
    }
}

/// The six values casbin is asked for a request, in [`REQUEST_FIELDS`] order.
pub fn request_values(request: &AccessRequest) -> [&'static str; 6] {
    let (consent, vital, basis) = match request.subject {
        None => (NONE, NONE, NONE),
        Some(s) => (
            s.consent.as_str(),
            s.vital.as_str(),
            s.basis.map_or(NONE, BasisKind::as_str),
        ),
    };
    let purpose = if request.direct_care {
        DIRECT_CARE
    } else {
        OTHER_PURPOSE
    };
    [
        request.role.as_str(),
        request.action.as_str(),
        purpose,
        consent,
        vital,
        basis,
    ]
}

/// `anyOf(value, list)`: the value is one of the `|`-separated list, or the list is `*`.
fn any_of(value: Dynamic, list: Dynamic) -> Dynamic {
    let value = dynamic_to_str(&value);
    let list = dynamic_to_str(&list);
    list.split('|')
        .map(str::trim)
        .any(|item| item == ANY || item == value)
        .into()
}

/// Asks casbin. A panic inside casbin (some of its built-in matcher functions panic on
/// bad input, e.g. an invalid regular expression in a rule) is turned into an error.
fn enforce(enforcer: &Enforcer, request: &AccessRequest) -> Result<bool, String> {
    let [role, action, purpose, consent, vital, basis] = request_values(request);
    match catch_unwind(AssertUnwindSafe(|| {
        enforcer.enforce((role, action, purpose, consent, vital, basis))
    })) {
        Ok(Ok(permitted)) => Ok(permitted),
        Ok(Err(error)) => Err(error.to_string()),
        Err(payload) => Err(payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .map_or_else(
                || "casbin panicked".to_owned(),
                |m| format!("casbin panicked: {m}"),
            )),
    }
}

/// Checks, loads and compiles one model and policy.
async fn build(texts: Texts) -> Result<Loaded, PolicyError> {
    let model_error = |message: String| PolicyError::Model {
        origin: texts.model_origin.clone(),
        message,
    };
    let model = DefaultModel::from_str(&texts.model)
        .await
        .map_err(|e| model_error(e.to_string()))?;
    check_model(&model).map_err(model_error)?;
    let rules = check_policy(&texts.policy_origin, &texts.policy, &model)?;

    let mut enforcer = Enforcer::new(model, StringAdapter::new(&texts.policy))
        .await
        .map_err(|e| model_error(e.to_string()))?;
    enforcer.add_function("anyOf", OperatorFunction::Arg2(any_of));

    let origin = format!("{} with {}", texts.model_origin, texts.policy_origin);
    let mut permitted = HashMap::new();
    for request in all_requests() {
        let allowed = enforce(&enforcer, &request).map_err(|message| PolicyError::Evaluation {
            origin: origin.clone(),
            request: request_values(&request).join(", "),
            message,
        })?;
        permitted.insert(request, allowed);
    }
    let permitted_count = permitted.values().filter(|p| **p).count();
    if permitted_count == 0 {
        return Err(PolicyError::PermitsNothing { origin });
    }
    let table = DecisionTable::compile(|r| permitted.get(r).copied().unwrap_or(false));
    Ok(Loaded {
        origin,
        enforcer,
        table,
        rules,
        permitted: permitted_count,
    })
}

/// The model must take the application's request and have a policy definition.
fn check_model(model: &DefaultModel) -> Result<(), String> {
    let sections = model.get_model();
    let request = sections
        .get("r")
        .and_then(|r| r.get("r"))
        .ok_or("it has no [request_definition] `r = ...`")?;
    let expected: Vec<String> = REQUEST_FIELDS.iter().map(|f| format!("r_{f}")).collect();
    if request.tokens != expected {
        return Err(format!(
            "the request definition must be `r = {}` (the application sends these values in \
             this order), not `r = {}`",
            REQUEST_FIELDS.join(", "),
            request.value
        ));
    }
    for (section, key, name) in [
        ("p", "p", "[policy_definition] `p = ...`"),
        ("e", "e", "[policy_effect] `e = ...`"),
        ("m", "m", "[matchers] `m = ...`"),
    ] {
        if sections.get(section).and_then(|s| s.get(key)).is_none() {
            return Err(format!("it has no {name}"));
        }
    }
    Ok(())
}

/// What a policy column may hold, by the column's name in the model.
fn vocabulary(column: &str) -> Option<Vec<&'static str>> {
    let mut values: Vec<&'static str> = match column {
        "action" => Action::ALL.iter().map(|a| a.as_str()).collect(),
        "purpose" => vec![DIRECT_CARE, OTHER_PURPOSE],
        "consent" => ConsentLevel::ALL.iter().map(|c| c.as_str()).collect(),
        "vital" => VitalStatus::ALL.iter().map(|v| v.as_str()).collect(),
        "basis" | "ask_first_basis" => [BasisKind::PermissionGiven, BasisKind::Emergency]
            .iter()
            .map(|b| b.as_str())
            .collect(),
        _ => return None,
    };
    if column != "action" && column != "purpose" {
        values.push(NONE);
    }
    values.push(ANY);
    Some(values)
}

/// Checks every policy line against the model: a known rule type, the right number of
/// columns, and known roles, actions and values. casbin itself skips lines it does not
/// understand and treats a misspelt value as one that never matches, so without this a
/// typo would silently take access away. Returns the number of rules.
fn check_policy(origin: &str, text: &str, model: &DefaultModel) -> Result<usize, PolicyError> {
    let sections = model.get_model();
    let mut arity: HashMap<&str, usize> = HashMap::new();
    let mut columns: HashMap<&str, Vec<String>> = HashMap::new();
    for (key, assertion) in sections.get("p").into_iter().flatten() {
        arity.insert(key, assertion.tokens.len());
        let prefix = format!("{key}_");
        columns.insert(
            key,
            assertion
                .tokens
                .iter()
                .map(|t| t.strip_prefix(&prefix).unwrap_or(t).to_owned())
                .collect(),
        );
    }
    for (key, assertion) in sections.get("g").into_iter().flatten() {
        arity.insert(key, assertion.value.matches('_').count());
    }

    let lines: Vec<(usize, Vec<String>)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.trim();
            (!line.is_empty() && !line.starts_with('#')).then(|| {
                (
                    i + 1,
                    line.split(',')
                        .map(|c| unquote(c.trim()).to_owned())
                        .collect(),
                )
            })
        })
        .collect();
    // Names used as groups (the last column of a two-column `g` rule).
    let groups: Vec<&str> = lines
        .iter()
        .filter(|(_, cols)| cols.first().is_some_and(|k| k.starts_with('g')))
        .filter_map(|(_, cols)| cols.get(2).map(String::as_str))
        .collect();
    let is_role =
        |name: &str| Role::ALL.iter().any(|r| r.as_str() == name) || groups.contains(&name);

    for (line, cols) in &lines {
        let rule_error = |message: String| PolicyError::Rule {
            origin: origin.to_owned(),
            line: *line,
            message,
        };
        let (key, values) = cols
            .split_first()
            .ok_or_else(|| rule_error("empty rule".into()))?;
        let Some(&expected) = arity.get(key.as_str()) else {
            let mut known: Vec<&str> = arity.keys().copied().collect();
            known.sort_unstable();
            return Err(rule_error(format!(
                "unknown rule type `{key}` (the model defines {})",
                known.join(", ")
            )));
        };
        if values.len() != expected {
            return Err(rule_error(format!(
                "a `{key}` rule has {expected} columns after `{key}`, this one has {}",
                values.len()
            )));
        }
        if key.starts_with('g') {
            if let Some(member) = values.first().filter(|m| !is_role(m)) {
                return Err(rule_error(format!(
                    "unknown role `{member}` (roles are {})",
                    role_names()
                )));
            }
            continue;
        }
        for (column, value) in columns.get(key.as_str()).into_iter().flatten().zip(values) {
            if value.is_empty() {
                return Err(rule_error(format!("the {column} column is empty")));
            }
            if column == "role" {
                if !is_role(value) {
                    return Err(rule_error(format!(
                        "unknown role or group `{value}` (roles are {}; groups are the \
                         last column of `g` rules)",
                        role_names()
                    )));
                }
                continue;
            }
            let Some(known) = vocabulary(column) else {
                continue;
            };
            if let Some(unknown) = value.split('|').map(str::trim).find(|v| !known.contains(v)) {
                return Err(rule_error(format!(
                    "unknown {column} `{unknown}` (known: {})",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(lines.len())
}

fn unquote(column: &str) -> &str {
    column
        .strip_prefix('"')
        .and_then(|c| c.strip_suffix('"'))
        .unwrap_or(column)
}

fn role_names() -> String {
    Role::ALL
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
