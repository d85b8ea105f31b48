//! IMU series as CSV: a header row naming the columns, then one sample per row.
//!
//! Columns are matched to the model's channels by name, so their order in the file and extra
//! columns (an index, a timestamp) do not matter. Names compare after [`canonical`]: `a_x`,
//! `acc_x`, `AccelX` and `accelerometer.x` all name the accelerometer's x axis.

use super::ImuError;

/// The field separator: a comma, or a tab or semicolon when the header has no comma.
fn separator(header: &str) -> char {
    [',', '\t', ';'].into_iter().find(|c| header.contains(*c)).unwrap_or(',')
}

/// A column or channel name reduced to compare equal across common spellings: lower case,
/// without `_ - . ` or spaces, with the sensor prefix (`a`, `acc`, `accel`, `accelerometer`;
/// `g`, `gyr`, `gyro`, `gyroscope`) written `acc` / `gyro` when one axis letter follows.
pub fn canonical(name: &str) -> String {
    let plain: String = name
        .trim()
        .trim_matches('"')
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    let Some(axis) = plain.chars().last().filter(|c| matches!(c, 'x' | 'y' | 'z')) else {
        return plain;
    };
    let prefix = &plain[..plain.len() - 1];
    let sensor = match prefix {
        "a" | "acc" | "accel" | "accelerometer" => "acc",
        "g" | "gyr" | "gyro" | "gyroscope" => "gyro",
        other => other,
    };
    format!("{sensor}{axis}")
}

/// The series in `text`, channel-major: `channels.len()` rows of equal length.
pub fn parse(text: &str, channels: &[String], max_samples: usize) -> Result<Vec<Vec<f32>>, ImuError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(ImuError::Csv("the file has no header row".into()));
    };
    let sep = separator(header);
    let names: Vec<&str> = header.split(sep).map(|n| n.trim().trim_matches('"')).collect();
    if names.iter().all(|n| n.parse::<f64>().is_ok()) {
        return Err(ImuError::Csv(format!(
            "the first row holds numbers, not a header naming the columns ({})",
            channels.join(", ")
        )));
    }
    let keys: Vec<String> = names.iter().map(|n| canonical(n)).collect();
    let columns = channels
        .iter()
        .map(|channel| {
            let want = canonical(channel);
            keys.iter().position(|k| *k == want).ok_or_else(|| {
                ImuError::Csv(format!(
                    "no column for channel {channel} (the header names: {})",
                    names.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let mut series = vec![Vec::new(); channels.len()];
    for (index, line) in lines {
        let line_no = index + 1;
        let fields: Vec<&str> = line.split(sep).collect();
        if fields.len() != names.len() {
            return Err(ImuError::Csv(format!(
                "line {line_no} has {} fields, the header has {}",
                fields.len(),
                names.len()
            )));
        }
        if series[0].len() == max_samples {
            return Err(ImuError::TooManySamples { samples: None, limit: max_samples });
        }
        for ((values, &column), channel) in series.iter_mut().zip(&columns).zip(channels) {
            let field = fields[column].trim().trim_matches('"');
            let value = field.parse::<f32>().map_err(|_| {
                ImuError::Csv(format!("line {line_no}, column {}: {field:?} is not a number", names[column]))
            })?;
            if !value.is_finite() {
                return Err(ImuError::Csv(format!(
                    "line {line_no}, column {} (channel {channel}): {field} is not finite",
                    names[column]
                )));
            }
            values.push(value);
        }
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels() -> Vec<String> {
        ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"].map(String::from).to_vec()
    }

    #[test]
    fn common_spellings_name_the_same_channel() {
        for name in ["a_x", "acc_x", "AccelX", "accelerometer.x", " ACC-X "] {
            assert_eq!(canonical(name), "accx", "{name}");
        }
        assert_eq!(canonical("g_z"), "gyroz");
        assert_eq!(canonical("timestamp"), "timestamp");
    }

    #[test]
    fn columns_are_found_by_name_in_any_order_and_extra_ones_are_ignored() {
        let text = ",g_x,g_y,g_z,a_x,a_y,a_z\n0,1,2,3,4,5,6\n1,7,8,9,10,11,12\n";
        let series = parse(text, &channels(), 10).unwrap();
        assert_eq!(series[0], vec![4.0, 10.0]);
        assert_eq!(series[5], vec![3.0, 9.0]);
    }

    #[test]
    fn problems_name_the_line_and_column() {
        let missing = parse("a_x,a_y\n1,2\n", &channels(), 10).unwrap_err();
        assert!(missing.to_string().contains("no column for channel acc_z"), "{missing}");
        let text = "ax,ay,az,gx,gy,gz\n1,2,3,4,5,6\n1,2,x,4,5,6\n";
        let bad = parse(text, &channels(), 10).unwrap_err();
        assert!(bad.to_string().contains("line 3, column az: \"x\" is not a number"), "{bad}");
        let short = parse("ax,ay,az,gx,gy,gz\n1,2,3\n", &channels(), 10).unwrap_err();
        assert!(short.to_string().contains("line 2 has 3 fields, the header has 6"), "{short}");
        let headless = parse("1,2,3,4,5,6\n", &channels(), 10).unwrap_err();
        assert!(headless.to_string().contains("not a header"), "{headless}");
        let long = parse("ax,ay,az,gx,gy,gz\n1,2,3,4,5,6\n1,2,3,4,5,6\n", &channels(), 1).unwrap_err();
        assert!(matches!(long, ImuError::TooManySamples { .. }), "{long}");
    }
}
