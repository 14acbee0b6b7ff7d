//! Parsing and checking of the string-typed spec values (durations, quantities, images, CIDs), and
//! the error type that names the offending field.
//!
//! The API server enforces the same rules through the CRD schema (patterns, bounds and CEL
//! `x-kubernetes-validations`); these functions let the local runtime, which has no API server,
//! refuse the same specs with the same field names, and give the reconciler typed values.

use std::fmt;
use std::time::Duration;

/// Regular expression a duration must match: one or more integer/unit pairs, units `ms`, `s`, `m`,
/// `h` (e.g. `10s`, `1m30s`, `500ms`). A subset of Go's `time.ParseDuration`, which CEL's
/// `duration()` uses, so the API server and this crate read the same value.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,6}(ms|s|m|h))+$";

/// Regular expression a storage size must match: a non-negative decimal number with an optional
/// binary (`Ki`..`Ei`) or decimal (`k`..`E`) suffix, e.g. `10Gi`, `500M`, `1.5Ti`.
pub const STORAGE_SIZE_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

/// The Kubernetes resource quantity syntax (what `controller-gen` emits for `resource.Quantity`).
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// A syntactically valid CID: CIDv0 (`Qm` + 44 base58btc characters, a sha2-256 multihash) or a
/// CIDv1 in one of the common multibase encodings: base32 (`b`, the default of Kubo and
/// ipfs-cluster, `B` upper case), base58btc (`z`), base36 (`k`), base16 (`f`/`F`), base64 (`m`)
/// or base64url (`u`). The base32 and base16 forms must encode version 1 (`ba...`, `f01...`).
pub const CID_PATTERN: &str = concat!(
    "^(Qm[1-9A-HJ-NP-Za-km-z]{44}",
    "|ba[a-z2-7]{10,}",
    "|BA[A-Z2-7]{10,}",
    "|z[1-9A-HJ-NP-Za-km-z]{10,}",
    "|k[0-9a-z]{10,}",
    "|f01[0-9a-f]{10,}",
    "|F01[0-9A-F]{10,}",
    "|m[A-Za-z0-9+/]{10,}",
    "|u[A-Za-z0-9_-]{10,})$",
);

/// The longest CID accepted (a CIDv1 of a 512-bit digest in base16 is about 140 characters).
pub const CID_MAX_LENGTH: usize = 256;

/// CEL rule on a container image string without a digest: pinned to a tag other than `latest`.
/// An image with a digest (an `@`) is left to [`IMAGE_DIGEST_RULE`], so one mistake gives one
/// error.
pub const PINNED_IMAGE_RULE: &str = "self.contains('@') || \
     (self.matches(':[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$') && !self.endsWith(':latest'))";

/// Message of [`PINNED_IMAGE_RULE`].
pub const PINNED_IMAGE_MESSAGE: &str = "must pin a version: a tag other than `latest` \
     (e.g. `ipfs/kubo:v0.42.0`) or a digest (`...@sha256:<64 hex digits>`)";

/// CEL rule on a container image string with a digest: one `@`, then a whole sha256 digest (a
/// truncated digest would be resolved by prefix, or not at all, by the container runtime).
pub const IMAGE_DIGEST_RULE: &str =
    "!self.contains('@') || self.matches('^[^@]+@sha256:[0-9a-f]{64}$')";

/// Message of [`IMAGE_DIGEST_RULE`].
pub const IMAGE_DIGEST_MESSAGE: &str = "must end in a whole digest: `@sha256:` followed by \
     exactly 64 lower-case hex digits (e.g. `ipfs/kubo@sha256:<64 hex digits>`)";

/// A plain semantic version tag ending an image reference without a digest, e.g. `:v0.42.0` in
/// `ipfs/kubo:v0.42.0`. Pre-release tags (`v0.42.0-rc1`), other tags and digests do not match.
pub const SEMVER_TAG_PATTERN: &str = ":v[0-9]{1,9}[.][0-9]{1,9}[.][0-9]{1,9}$";

/// CEL transition rule on `spec.kubo.image`: a new image whose `vX.Y.Z` tag is lower than the
/// old image's is refused. Kubo migrates its repository forward only (`ipfs repo migrate` at each
/// start), and an older Kubo cannot open a repository a newer one migrated. Images without such a
/// tag on either side (digests, other tags) cannot be compared and are let through; the upgrade
/// gate then stops the rollout at the first peer if the older Kubo refuses the repository.
pub fn no_downgrade_rule() -> String {
    let tag = format!("r'{SEMVER_TAG_PATTERN}'");
    let part = |s: &str, i: usize| format!("int({s}.find({tag}).substring(2).split('.')[{i}])");
    let (n0, n1, n2) = (part("self", 0), part("self", 1), part("self", 2));
    let (o0, o1, o2) = (part("oldSelf", 0), part("oldSelf", 1), part("oldSelf", 2));
    format!(
        "self.contains('@') || oldSelf.contains('@') || !self.matches({tag}) || \
         !oldSelf.matches({tag}) || {n0} > {o0} || ({n0} == {o0} && ({n1} > {o1} || \
         ({n1} == {o1} && {n2} >= {o2})))"
    )
}

/// Message expression of [`no_downgrade_rule`]: names both images and why.
pub const NO_DOWNGRADE_MESSAGE: &str = "'cannot downgrade Kubo from ' + oldSelf + ' to ' + self + \
     ': Kubo migrates its repository forward only, and an older Kubo cannot open a repository a \
     newer one has migrated; keep the version or choose a newer one'";

/// The `(major, minor, patch)` of an image's plain `vX.Y.Z` tag (see [`SEMVER_TAG_PATTERN`]).
pub fn semver_tag(image: &str) -> Option<(u64, u64, u64)> {
    if image.contains('@') {
        return None;
    }
    let (_, tag) = image.rsplit_once(':')?;
    let mut parts = tag.strip_prefix('v')?.split('.').map(|p| {
        let digits = !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| p.parse::<u64>().ok()).flatten()
    });
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// The refusal [`no_downgrade_rule`] gives for `old` -> `new`, if any (its message, evaluated).
pub fn kubo_downgrade(old: &str, new: &str) -> Option<String> {
    let (from, to) = (semver_tag(old)?, semver_tag(new)?);
    (to < from).then(|| {
        format!(
            "cannot downgrade Kubo from {old} to {new}: Kubo migrates its repository forward \
             only, and an older Kubo cannot open a repository a newer one has migrated; keep the \
             version or choose a newer one"
        )
    })
}

/// One invalid field of a spec: the JSON path of the field (e.g. `spec.health.probeTimeout`) and
/// what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, from the object root (`spec.replicas`).
    pub field: String,
    /// What is wrong and, where useful, what to do instead.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// All invalid fields of one object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// `Ok` when `errors` is empty.
    pub fn check(errors: Vec<FieldError>) -> Result<(), ValidationErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }

    /// Whether one of the errors is about `field` (exact JSON path).
    pub fn names(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Parses a duration in the [`DURATION_PATTERN`] syntax (`10s`, `1m30s`, `500ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("`{s}` is not a duration like `10s`, `1m30s` or `500ms`");
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 6 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return Err(invalid());
        };
        rest = &rest[len..];
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| invalid())?)
            .ok_or_else(invalid)?;
        total = total.checked_add(part).ok_or_else(invalid)?;
    }
    Ok(total)
}

/// Parses a storage size in the [`STORAGE_SIZE_PATTERN`] syntax to bytes (fractions of a byte are
/// rounded up, as Kubernetes does).
pub fn parse_storage_size(s: &str) -> Result<u128, String> {
    let invalid = || format!("`{s}` is not a storage size like `10Gi`, `500Mi` or `1T`");
    let number_len = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = s.split_at(number_len);
    let multiplier: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return Err(invalid()),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => return Err(invalid()),
        None => (number, ""),
    };
    if whole.is_empty() || fraction.len() > 18 {
        return Err(invalid());
    }
    let digits: u128 = format!("{whole}{fraction}")
        .parse()
        .map_err(|_| invalid())?;
    let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| invalid())?);
    let scaled = digits.checked_mul(multiplier).ok_or_else(invalid)?;
    Ok(scaled.div_ceil(scale))
}

/// Whether `s` is a Kubernetes resource quantity ([`QUANTITY_PATTERN`]).
pub fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number_len = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = s.split_at(number_len);
    if !is_decimal(number) {
        return false;
    }
    match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        exp => match exp.strip_prefix(['e', 'E']) {
            Some(e) => is_decimal(e.strip_prefix(['+', '-']).unwrap_or(e)),
            None => false,
        },
    }
}

/// The value of a Kubernetes quantity as a float (`500m` is 0.5, `1Ki` is 1024), for comparisons;
/// `None` when `s` is not a quantity.
pub fn quantity_value(s: &str) -> Option<f64> {
    if !is_quantity(s) {
        return None;
    }
    let (sign, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    let number_len = unsigned
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = unsigned.split_at(number_len);
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp => 10f64.powf(exp[1..].parse::<f64>().ok()?),
    };
    Some(sign * number * multiplier)
}

/// `123`, `1.5`, `1.` or `.5`.
fn is_decimal(s: &str) -> bool {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    (!whole.is_empty() || !fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// Checks that a container image reference pins a version ([`PINNED_IMAGE_RULE`] and
/// [`IMAGE_DIGEST_RULE`]); the error is the message of the rule that fails.
pub fn check_image(image: &str) -> Result<(), &'static str> {
    if let Some((name, digest)) = image.split_once('@') {
        let whole = !name.is_empty()
            && digest.strip_prefix("sha256:").is_some_and(|hex| {
                hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            });
        return if whole {
            Ok(())
        } else {
            Err(IMAGE_DIGEST_MESSAGE)
        };
    }
    let tag_ok = image.rsplit_once(':').is_some_and(|(_, tag)| {
        let mut bytes = tag.bytes();
        tag.len() <= 128
            && bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && tag != "latest"
    });
    if tag_ok {
        Ok(())
    } else {
        Err(PINNED_IMAGE_MESSAGE)
    }
}

/// Whether a container image reference pins a version (see [`check_image`]).
pub fn is_pinned_image(image: &str) -> bool {
    check_image(image).is_ok()
}

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Checks that `cid` is a syntactically valid CID (see [`CID_PATTERN`]). For the encodings Kubo
/// and ipfs-cluster print (CIDv0, base32 CIDv1) the bytes are decoded and the multihash length is
/// checked too, so a truncated or mistyped CID is refused, not only a malformed one.
pub fn check_cid(cid: &str) -> Result<(), String> {
    if cid.len() > CID_MAX_LENGTH {
        return Err(format!("a CID has at most {CID_MAX_LENGTH} characters"));
    }
    let alphabet_ok = |rest: &str, ok: fn(u8) -> bool| rest.len() >= 10 && rest.bytes().all(ok);
    let shape_ok = if let Some(rest) = cid.strip_prefix("Qm") {
        rest.len() == 44 && rest.bytes().all(|b| BASE58.contains(&b))
    } else if let Some(rest) = cid.strip_prefix("ba") {
        alphabet_ok(rest, |b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
    } else if let Some(rest) = cid.strip_prefix("BA") {
        alphabet_ok(rest, |b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
    } else if let Some(rest) = cid.strip_prefix('z') {
        alphabet_ok(rest, |b| BASE58.contains(&b))
    } else if let Some(rest) = cid.strip_prefix('k') {
        alphabet_ok(rest, |b| b.is_ascii_digit() || b.is_ascii_lowercase())
    } else if let Some(rest) = cid.strip_prefix("f01") {
        alphabet_ok(rest, |b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    } else if let Some(rest) = cid.strip_prefix("F01") {
        alphabet_ok(rest, |b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
    } else if let Some(rest) = cid.strip_prefix('m') {
        alphabet_ok(rest, |b| {
            b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
        })
    } else if let Some(rest) = cid.strip_prefix('u') {
        alphabet_ok(rest, |b| {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
        })
    } else {
        false
    };
    if !shape_ok {
        return Err(
            "must be a CID: CIDv0 (`Qm` followed by 44 base58 characters) or a multibase CIDv1 \
             such as `bafy...` (base32), `z...` (base58btc), `k...` (base36) or `f01...` (base16)"
                .into(),
        );
    }
    let bytes = if cid.starts_with("Qm") {
        decode_base58(cid).ok_or("is not valid base58")?
    } else if let Some(rest) = cid.strip_prefix('b') {
        decode_base32_lower(rest).ok_or("is not valid base32")?
    } else {
        return Ok(());
    };
    check_cid_bytes(&bytes, cid.starts_with("Qm"))
}

fn check_cid_bytes(bytes: &[u8], v0: bool) -> Result<(), String> {
    let mut rest = bytes;
    if !v0 {
        let version = read_varint(&mut rest).ok_or("is truncated (no version)")?;
        if version != 1 {
            return Err(format!(
                "has CID version {version}; only versions 0 and 1 exist"
            ));
        }
        read_varint(&mut rest).ok_or("is truncated (no content codec)")?;
    }
    let hash_code = read_varint(&mut rest).ok_or("is truncated (no multihash code)")?;
    let digest_len = read_varint(&mut rest).ok_or("is truncated (no digest length)")?;
    if v0 && (hash_code != 0x12 || digest_len != 32) {
        return Err("is not a sha2-256 multihash, which a CIDv0 must be".into());
    }
    if u64::try_from(rest.len()).ok() != Some(digest_len) {
        return Err(format!(
            "declares a {digest_len}-byte digest but carries {} bytes (truncated or mistyped?)",
            rest.len()
        ));
    }
    Ok(())
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(9) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

fn decode_base58(s: &str) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    for c in s.bytes() {
        let mut carry = u32::try_from(BASE58.iter().position(|&a| a == c)?).ok()?;
        for byte in out.iter_mut().rev() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|&c| c == b'1').count();
    let mut result = vec![0u8; zeros];
    result.extend(out);
    Some(result)
}

fn decode_base32_lower(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in [
            "", "10", "s", "1.5s", "10 s", "-1s", "1d", "10sec", "1234567s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn storage_sizes_parse_to_bytes() {
        assert_eq!(parse_storage_size("10Gi"), Ok(10 << 30));
        assert_eq!(parse_storage_size("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_storage_size("500M"), Ok(500_000_000));
        assert_eq!(parse_storage_size("1024"), Ok(1024));
        assert!(parse_storage_size("1Ti").unwrap() > parse_storage_size("999Gi").unwrap());
        for bad in ["", "Gi", "ten", "1GB", "-1Gi", "1.Gi", "1e3", "1 Gi"] {
            assert!(parse_storage_size(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn quantities_follow_kubernetes_syntax() {
        for good in [
            "1", "500m", "1.5", "2Gi", "100Mi", "1e3", "+1k", ".5", "1E-2",
        ] {
            assert!(is_quantity(good), "{good:?}");
        }
        for bad in ["", "lots", "1GB", "1.2.3", "m", "1e", "Gi"] {
            assert!(!is_quantity(bad), "{bad:?}");
            assert_eq!(quantity_value(bad), None, "{bad:?}");
        }
        assert_eq!(quantity_value("500m"), Some(0.5));
        assert_eq!(quantity_value("2Gi"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(quantity_value("1e3"), Some(1000.0));
        assert_eq!(quantity_value("-1k"), Some(-1000.0));
    }

    #[test]
    fn images_must_be_pinned() {
        assert!(is_pinned_image("ipfs/kubo:v0.42.0"));
        assert!(is_pinned_image("registry.local:5000/ipfs/kubo:v0.42.0"));
        assert!(is_pinned_image(&format!(
            "ipfs/kubo@sha256:{}",
            "a".repeat(64)
        )));
        assert!(is_pinned_image(&format!(
            "registry.local:5000/ipfs/kubo:v0.42.0@sha256:{}",
            "0123456789abcdef".repeat(4)
        )));
        for bad in [
            "ipfs/kubo",
            "ipfs/kubo:latest",
            "registry.local:5000/ipfs/kubo",
            "ipfs/kubo:",
            "",
        ] {
            assert_eq!(check_image(bad), Err(PINNED_IMAGE_MESSAGE), "{bad:?}");
        }
        // A digest must be whole: `@sha256:` and exactly 64 lower-case hex digits, nothing else.
        let hex = "a".repeat(64);
        for bad in [
            "ipfs/kubo@sha256:abc".to_owned(),
            format!("ipfs/kubo@sha256:{}", &hex[1..]),
            format!("ipfs/kubo@sha256:{hex}0"),
            format!("ipfs/kubo@sha256:{}", hex.to_uppercase()),
            format!("ipfs/kubo@sha512:{hex}{hex}"),
            format!("ipfs/kubo@{hex}"),
            format!("@sha256:{hex}"),
            format!("ipfs/kubo@x@sha256:{hex}"),
            "ipfs/kubo:v0.42.0@".to_owned(),
        ] {
            assert_eq!(check_image(&bad), Err(IMAGE_DIGEST_MESSAGE), "{bad:?}");
        }
        assert!(IMAGE_DIGEST_MESSAGE.contains("64"));
    }

    #[test]
    fn cids_are_checked_for_shape_and_length() {
        let v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
        let v1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
        assert_eq!(check_cid(v0), Ok(()));
        assert_eq!(check_cid(v1), Ok(()));
        assert_eq!(
            check_cid("zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7"),
            Ok(())
        );
        // Wrong lengths, characters outside the alphabet, unknown multibase prefixes.
        for bad in [
            "",
            "hello",
            &v0[..45],
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd0",
            "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzd1",
            "xafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            "Bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        ] {
            assert!(check_cid(bad).is_err(), "{bad:?} must be refused");
        }
        // Right alphabet, truncated digest.
        let err = check_cid(&v1[..40]).expect_err("truncated");
        assert!(err.contains("digest"), "{err}");
    }

    #[test]
    fn only_plain_version_tags_are_compared() {
        assert_eq!(semver_tag("ipfs/kubo:v0.42.0"), Some((0, 42, 0)));
        assert_eq!(
            semver_tag("registry:5000/ipfs/kubo:v1.2.13"),
            Some((1, 2, 13))
        );
        for other in [
            "ipfs/kubo:v0.42.0-rc1",
            "ipfs/kubo:0.42.0",
            "ipfs/kubo:v0.42",
            "ipfs/kubo:release",
            "ipfs/kubo:v0.42.0@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "registry:5000/ipfs/kubo",
        ] {
            assert_eq!(semver_tag(other), None, "{other}");
        }
    }

    /// Version parts compare as numbers (v0.9.0 < v0.10.0), major first; equal or higher
    /// versions and anything not comparable pass.
    #[test]
    fn a_lower_kubo_version_is_refused_naming_both_images() {
        let refusal = kubo_downgrade("ipfs/kubo:v0.42.0", "ipfs/kubo:v0.41.3").expect("refused");
        assert!(
            refusal
                .starts_with("cannot downgrade Kubo from ipfs/kubo:v0.42.0 to ipfs/kubo:v0.41.3: "),
            "{refusal}"
        );
        assert!(refusal.contains("repository"), "{refusal}");
        assert!(kubo_downgrade("ipfs/kubo:v0.10.0", "ipfs/kubo:v0.9.9").is_some());
        assert!(kubo_downgrade("ipfs/kubo:v1.0.0", "ipfs/kubo:v0.99.0").is_some());
        for (old, new) in [
            ("ipfs/kubo:v0.9.0", "ipfs/kubo:v0.10.0"),
            ("ipfs/kubo:v0.42.0", "ipfs/kubo:v0.42.0"),
            ("ipfs/kubo:v0.42.0", "ipfs/kubo:v0.42.1"),
            ("ipfs/kubo:v0.42.0", "ipfs/kubo:v1.0.0"),
            ("ipfs/kubo:v0.42.0", "ipfs/kubo:test"),
            (
                "ipfs/kubo:v0.42.0",
                "ipfs/kubo@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ),
        ] {
            assert_eq!(kubo_downgrade(old, new), None, "{old} -> {new}");
        }
        // The CEL rule and its message are the same comparison, on the same tags.
        let rule = no_downgrade_rule();
        assert!(
            rule.contains(SEMVER_TAG_PATTERN) && rule.contains("oldSelf"),
            "{rule}"
        );
        assert!(NO_DOWNGRADE_MESSAGE.contains("oldSelf + ' to ' + self"));
    }
}
