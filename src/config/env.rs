//! `REGISTRY_*` environment overrides, as distribution does them: the variable name,
//! lowercased and split at `_`, is the key path (`REGISTRY_STORAGE_DELETE_ENABLED` →
//! `storage.delete.enabled`); the value is read as a YAML scalar. As in distribution,
//! `REGISTRY_STORAGE=s3` chooses the storage driver: the file's other driver section is
//! dropped (its switches such as `storage.delete` stay) and `REGISTRY_STORAGE_S3_*`
//! fill the chosen one.
//!
//! A `REGISTRY_*` variable that names no configuration key (`REGISTRY_URL`, which CI
//! systems and container platforms set for their own use) is ignored and reported
//! as such, as distribution does; a key it names with a bad value is refused like a bad
//! value in the file. Unknown keys in the file itself stay fatal.

use serde_norway::{Mapping, Value};

use super::storage::DRIVERS;
use super::{Config, ConfigError};

const PREFIX: &str = "REGISTRY_";

/// `REGISTRY_*` variables that belong to container clients, not to the registry
/// (podman, skopeo and buildah keep their credentials file path in `REGISTRY_AUTH_FILE`);
/// they are skipped so a shell set up for those tools can still start Wharf.
const CLIENT_VARIABLES: [&str; 1] = ["REGISTRY_AUTH_FILE"];

/// A `REGISTRY_*` variable that was not applied, and why (for a warning at start-up;
/// its value is never shown, it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredVariable {
    pub name: String,
    pub reason: String,
}

/// Applies the `REGISTRY_*` variables among `vars` to `tree`; returns those ignored.
pub fn apply_overrides(
    tree: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<IgnoredVariable>, ConfigError> {
    let mut ignored = Vec::new();
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX) && k.len() > PREFIX.len())
        .filter(|(k, _)| {
            let client = CLIENT_VARIABLES.contains(&k.as_str());
            if client {
                ignored.push(IgnoredVariable {
                    name: k.clone(),
                    reason: "a container client's setting, not a registry key".into(),
                });
            }
            !client
        })
        .collect();
    // Shorter paths first, so REGISTRY_STORAGE_FILESYSTEM can be set before its children.
    vars.sort_by_key(|(k, _)| k.matches('_').count());
    for (var, raw) in vars {
        let path: Vec<String> = var[PREFIX.len()..]
            .split('_')
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::Env {
                var,
                message: "empty key component".into(),
            });
        }
        if let Some(unknown) = unknown_key(&path) {
            ignored.push(IgnoredVariable {
                name: var,
                reason: format!("`{unknown}` is not a configuration key"),
            });
            continue;
        }
        let value: Value = serde_norway::from_str(&raw).unwrap_or(Value::String(raw.clone()));
        if path == ["storage"] {
            if let Value::String(driver) = &value {
                select_driver(tree, driver).map_err(|message| ConfigError::Env {
                    var: var.clone(),
                    message,
                })?;
                continue;
            }
        }
        set(tree, &path, value).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
    }
    ignored.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ignored)
}

/// If `path` names no key of the configuration, the first component that is unknown
/// (`http.nope` for `REGISTRY_HTTP_NOPE`). Checked on its own, with a null value, so
/// that only the path is judged: a bad value of a real key is found later, with the
/// rest of the configuration, and refused.
fn unknown_key(path: &[String]) -> Option<String> {
    if path == ["storage"] {
        return None;
    }
    let mut probe = Value::Mapping(Mapping::new());
    set(&mut probe, path, Value::Null).ok()?;
    let error = serde_path_to_error::deserialize::<_, Config>(probe).err()?;
    // The path ends at the unknown field; the message is serde's wording for a field
    // that `deny_unknown_fields` refuses.
    let path = error.path().to_string();
    error
        .into_inner()
        .to_string()
        .starts_with("unknown field `")
        .then_some(path)
}

/// `REGISTRY_STORAGE=<driver>`: keeps `storage`'s switches, replaces its driver.
fn select_driver(tree: &mut Value, driver: &str) -> Result<(), String> {
    let driver = driver.to_ascii_lowercase();
    if !DRIVERS.contains(&driver.as_str()) {
        return Err(format!(
            "{driver:?} is not a storage driver ({})",
            DRIVERS.join(", ")
        ));
    }
    let root = match tree {
        Value::Mapping(map) => map,
        _ => return Err("the configuration is not a mapping".into()),
    };
    let storage = root
        .entry(Value::String("storage".into()))
        .or_insert(Value::Null);
    if !storage.is_mapping() {
        *storage = Value::Mapping(Mapping::new());
    }
    let Some(storage) = storage.as_mapping_mut() else {
        return Err("`storage` is not a section".into());
    };
    storage.retain(|k, _| match k.as_str() {
        Some(name) => name == driver || !DRIVERS.contains(&name),
        None => true,
    });
    storage
        .entry(Value::String(driver))
        .or_insert(Value::Mapping(Mapping::new()));
    Ok(())
}

fn set(tree: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let mut node = tree;
    for (i, key) in path.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            return Err(format!(
                "`{}` is not a section, so it has no key `{key}`",
                path[..i].join(".")
            ));
        };
        let k = Value::String(key.clone());
        if i + 1 == path.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert(Value::Null);
    }
    Ok(())
}
