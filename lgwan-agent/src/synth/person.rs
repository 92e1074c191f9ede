//! Invented insured persons: fictional names, card identifiers, birth date, address.

use super::{Rng, SynthPerson};
use crate::domain::Sex;

pub(super) const FAMILY: &[&str] = &[
    "見本", "試験", "仮名", "模擬", "架空", "標本", "雛形", "例示",
];
const GIVEN_M: &[&str] = &["太郎", "次郎", "一平", "健作", "守男"];
const GIVEN_F: &[&str] = &["花子", "春美", "夏代", "秋絵", "冬乃"];
const CITIES: &[&str] = &["架空県見本市中央区", "模擬県試験町", "仮名県例示村"];
const SYMBOL_PREFIX: &[&str] = &["見本", "ｱｲ", ""];

/// One invented insured person.
#[derive(Clone, Debug)]
pub(super) struct Person {
    pub(super) sex: Sex,
    pub(super) name: String,
    pub(super) insurer: String,
    pub(super) symbol: String,
    pub(super) number: String,
    pub(super) branch: Option<String>,
    pub(super) birth: String,
    pub(super) postal: String,
    pub(super) address: String,
    pub(super) full_width: bool,
}

impl Person {
    pub(super) fn invent(rng: &mut Rng, index: usize, year: i32) -> Person {
        let sex = if rng.unit() < 0.5 {
            Sex::Male
        } else {
            Sex::Female
        };
        let name = format!("{}\u{3000}{}", rng.pick(FAMILY), Self::given(rng, sex));
        let insurer = if rng.unit() < 0.5 {
            rng.range(130_000, 139_999).to_string()
        } else {
            format!("0{}", rng.range(6_130_000, 6_139_999))
        };
        let prefix = rng.pick(SYMBOL_PREFIX);
        let symbol = format!("{prefix}{}-{}", rng.range(10, 999), rng.range(1, 99));
        let number = rng.range(10_000, 9_999_999).to_string();
        let branch = (rng.unit() < 0.7).then(|| format!("{:02}", rng.range(0, 3)));
        let year = i64::from(year);
        let birth = format!(
            "{}{:02}{:02}",
            rng.range(year - 74, year - 39),
            rng.range(1, 13),
            rng.range(1, 29)
        );
        let postal = format!("{}-{:04}", rng.range(100, 999), rng.range(0, 9999));
        let address = format!(
            "{}{}丁目{}番{}号",
            rng.pick(CITIES),
            rng.range(1, 9),
            rng.range(1, 30),
            rng.range(1, 20)
        );
        let full_width = index % 2 == 1;
        Person {
            sex,
            name,
            insurer,
            symbol,
            number,
            branch,
            birth,
            postal,
            address,
            full_width,
        }
    }

    fn given(rng: &mut Rng, sex: Sex) -> &'static str {
        rng.pick(if sex == Sex::Male { GIVEN_M } else { GIVEN_F })
    }

    /// Same canonical identity, another name and another 枝番.
    pub(super) fn twin(&self, rng: &mut Rng) -> Person {
        let name = format!("{}\u{3000}{}", rng.pick(FAMILY), Self::given(rng, self.sex));
        let branch = if self.branch.as_deref() == Some("02") {
            "03"
        } else {
            "02"
        };
        Person {
            name,
            branch: Some(branch.into()),
            full_width: false,
            ..self.clone()
        }
    }

    pub(super) fn identity(&self, document_id: String) -> SynthPerson {
        let birth = &self.birth;
        SynthPerson {
            document_id,
            insurer_number: self.insurer.clone(),
            symbol: self.symbol.clone(),
            number: self.number.clone(),
            branch: self.branch.clone(),
            full_width: self.full_width,
            birth_date: format!(
                "{}-{}-{}",
                birth.get(..4).unwrap_or_default(),
                birth.get(4..6).unwrap_or_default(),
                birth.get(6..).unwrap_or_default()
            ),
            sex: self.sex,
            name: self.name.clone(),
        }
    }
}

/// ASCII digits, `-` and capitals to full width; other characters unchanged.
pub(super) fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' | 'A'..='Z' | '-' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_digits_dash_and_capitals() {
        assert_eq!(full_width("見本12-3"), "見本１２－３");
        assert_eq!(full_width("ｱｲ9"), "ｱｲ９");
    }
}
