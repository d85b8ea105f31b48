//! Model families: the preprocessing defaults a manifest's `family` names.
//!
//! A family is data, one TOML file in `families/` with the values its models share (a tokenizer
//! kind, a cleaning, a resize mode, a mean and std), laid out like the sections of `model.toml`.
//! A manifest with `family = "<name>"` gets each of those values it does not give itself, for the
//! modality sections it declares; nothing else in bindery looks at the family. Adding a family is
//! a file and a line in [`FAMILIES`].

/// Each known family and its defaults.
const FAMILIES: &[(&str, &str)] = &[
    ("imagebind", include_str!("families/imagebind.toml")),
    ("openclip", include_str!("families/openclip.toml")),
    ("siglip", include_str!("families/siglip.toml")),
    ("clap", include_str!("families/clap.toml")),
    ("languagebind", include_str!("families/languagebind.toml")),
];

/// Names of the known families.
pub fn names() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|(name, _)| *name)
}

/// The defaults of `family`, or `None` for an unknown family.
pub fn defaults(family: &str) -> Option<Result<toml::Table, toml::de::Error>> {
    FAMILIES.iter().find(|(name, _)| *name == family).map(|(_, text)| toml::from_str(text))
}

/// Adds to `manifest` every value of `defaults` it lacks, for the sections it has: tables are
/// merged key by key, any other value the manifest gives wins.
pub fn apply(manifest: &mut toml::Table, defaults: toml::Table) {
    for (key, default) in defaults {
        // A section the manifest does not declare stays undeclared.
        if let (Some(toml::Value::Table(own)), toml::Value::Table(default)) =
            (manifest.get_mut(&key), default)
        {
            merge(own, default);
        }
    }
}

fn merge(own: &mut toml::Table, defaults: toml::Table) {
    for (key, default) in defaults {
        match own.get_mut(&key) {
            Some(toml::Value::Table(inner)) => {
                if let toml::Value::Table(default) = default {
                    merge(inner, default);
                }
            }
            Some(_) => {}
            None => {
                own.insert(key, default);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_file_parses() {
        for name in names() {
            let table = defaults(name).expect("known").expect("valid TOML");
            assert!(!table.is_empty(), "{name} has no defaults");
        }
        assert!(defaults("no-such-family").is_none());
    }

    #[test]
    fn the_manifest_wins_and_undeclared_sections_stay_out() {
        let mut manifest: toml::Table =
            toml::from_str("[text]\nonnx = \"t.onnx\"\n[text.preprocess]\ncontext_length = 32\n")
                .expect("toml");
        apply(&mut manifest, defaults("siglip").expect("known").expect("valid"));
        let text = manifest["text"]["preprocess"].as_table().expect("table");
        assert_eq!(text["context_length"].as_integer(), Some(32));
        assert_eq!(text["clean"].as_str(), Some("canonicalize"));
        assert!(!manifest.contains_key("image"));
    }
}
