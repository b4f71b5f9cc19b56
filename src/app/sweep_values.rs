//! A sweep's values as typed: a comma-separated list, each entry read by the sweep's
//! parameter (numbers, method names, mask switches).

/// Parses "0, 0.5, 1" into numbers; names the first entry that is not one.
pub fn parse_values(text: &str) -> Result<Vec<f64>, String> {
    parse_list(text, |v| {
        v.trim()
            .parse::<f64>()
            .map_err(|_| format!("sweep value `{}` is not a number", v.trim()))
    })
}

/// Parses a comma-separated list with `parse`, skipping empty entries; an empty list
/// is an error, as is the first entry `parse` refuses.
pub fn parse_list<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let values = text
        .split(',')
        .filter(|v| !v.trim().is_empty())
        .map(parse)
        .collect::<Result<Vec<_>, _>>()?;
    if values.is_empty() {
        return Err("a sweep needs at least one value".to_string());
    }
    Ok(values)
}
