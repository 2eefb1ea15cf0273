//! The period between passes (SPEC section 3, `-i/--interval SECS`): one allowed range and one
//! validator, shared by both command lines and by twoway's `config.json` `"interval"` (SPEC
//! section 4 "Recovery"), so that every way of setting it refuses the same values in the same
//! words.
//!
//! Why a maximum (hardening issue, part A): the pass loop sleeps until `now + interval`, and
//! `--interval 18446744073709551615` overflowed that deadline and panicked after the first
//! pass. One year is far beyond any useful period and far below any overflow; `Shutdown::sleep`
//! is also made unable to panic, but a value nobody can mean is bad input, refused up front.

use std::num::IntErrorKind;

/// The shortest period, in seconds.
pub const MIN_SECS: u64 = 1;

/// The longest period, in seconds: one year of 365 days.
pub const MAX_SECS: u64 = 365 * 24 * 60 * 60;

/// Parses a period given in whole seconds, refusing anything outside
/// [`MIN_SECS`]`..=`[`MAX_SECS`] with a message that names the allowed range. Usable as a
/// clap `value_parser`.
pub fn parse_secs(text: &str) -> Result<u64, String> {
    let range = format!("{MIN_SECS}..={MAX_SECS} seconds (one year at most)");
    match text.parse::<u64>() {
        Ok(secs) if (MIN_SECS..=MAX_SECS).contains(&secs) => Ok(secs),
        Ok(_) => Err(format!("{text} is out of range: the interval must be in {range}")),
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => {
            Err(format!("{text} is out of range: the interval must be in {range}"))
        }
        Err(_) => Err(format!("{text:?} is not a whole number of seconds in {range}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_one_second_to_one_year_and_errors_name_it() {
        assert_eq!(parse_secs("1"), Ok(1));
        assert_eq!(parse_secs("60"), Ok(60));
        assert_eq!(parse_secs("31536000"), Ok(31_536_000));
        for bad in ["0", "31536001", "18446744073709551615", "99999999999999999999999", "-1", "soon", ""] {
            let err = parse_secs(bad).unwrap_err();
            assert!(err.contains("1..=31536000"), "{bad}: {err}");
        }
    }
}
