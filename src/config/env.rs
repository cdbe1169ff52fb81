//! `REGISTRY_*` environment overrides, as distribution does them: the variable name,
//! lowercased and split at `_`, is the key path (`REGISTRY_STORAGE_DELETE_ENABLED` →
//! `storage.delete.enabled`); the value is read as a YAML scalar.

use serde_yaml::{Mapping, Value};

use super::ConfigError;

const PREFIX: &str = "REGISTRY_";

pub fn apply_overrides(
    tree: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX) && k.len() > PREFIX.len())
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
        let value: Value = serde_yaml::from_str(&raw).unwrap_or(Value::String(raw.clone()));
        set(tree, &path, value).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
    }
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
