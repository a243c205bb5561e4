//! "Did you mean": the known name a misspelt one most likely stands for, for field names in
//! lint, and for resource names and values in the CLI.

/// The name of `known` that `given` is most likely a misspelling of: the same name but for
/// case (`logicaltype` → `logicalType`), else the nearest within an edit distance (a swap of
/// two neighbours counting as one edit) of a third
/// of the name's length (at least 1, at most 3; ties go to the first). `None` when nothing
/// is that near, or when `given` is itself known.
pub fn closest<'k>(given: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    let lower = given.to_lowercase();
    let limit = (given.chars().count() / 3).clamp(1, 3);
    let mut best: Option<(usize, &'k str)> = None;
    for name in known {
        if name == given {
            return None;
        }
        let distance =
            if name.to_lowercase() == lower { 0 } else { strsim::osa_distance(&lower, &name.to_lowercase()) };
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, name));
        }
    }
    best.map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn a_misspelt_name_finds_the_one_it_stands_for() {
        let fields = ["name", "description", "logicalType", "mustBeGreaterThan", "mustBeGreaterOrEqualTo"];
        assert_eq!(closest("descripton", fields), Some("description"));
        assert_eq!(closest("logicaltype", fields), Some("logicalType"));
        assert_eq!(closest("mustBeGreaterThen", fields), Some("mustBeGreaterThan"));
        assert_eq!(closest("nmae", fields), Some("name"));
    }

    #[test]
    fn a_name_far_from_every_known_one_gets_no_guess() {
        let fields = ["name", "description", "logicalType"];
        assert_eq!(closest("owner", fields), None);
        assert_eq!(closest("x", fields), None);
        assert_eq!(closest("name", fields), None, "a known name is not a misspelling");
        assert_eq!(closest("anything", []), None);
    }
}
