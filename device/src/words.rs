//! Prices as spoken words: the recorded words a terminal speaks amounts with, and the rule that
//! turns an amount into them.
//!
//! A product's name is the operator's free text, but its price is a number and a currency, so
//! it can be spoken from a small set of recorded words: the numbers (zero to nineteen, the tens,
//! hundred, and thousand up to quintillion, enough for any amount), "point", "free", the names of
//! a few currencies and their cents ([`currency_words`]), and the letters A to Z. [`amount`]
//! turns a price into words: `750 EUR` is "seven euros fifty cents", `100 EUR` "one euro",
//! `5 EUR` "five cents", `0` "free", `300 JPY` "three hundred yen". A currency without words
//! of its own is read as its number and its code: `1250 SEK` is "twelve point five zero S E K".
//!
//! Every word is a row of one table ([`Word::ALL`]) with its text and its recording,
//! `device/assets/words/{file}.wav`, made by `device/assets/generate.sh`; the tests check that the
//! script lists the same words, that every word has its file and every file its word.

use std::fmt;

use tapgate_protocol::Currency;

/// A recorded word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Word {
    text: &'static str,
    file: &'static str,
}

impl Word {
    /// The word as printed and spoken.
    pub const fn text(self) -> &'static str {
        self.text
    }

    /// Its recording's path under `device/assets/`: `words/{file}.wav`.
    pub const fn file_name(self) -> &'static str {
        self.file
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

/// The table of words: `NAME: "text" => "file",`.
macro_rules! words {
    ($($name:ident: $text:literal => $file:literal,)*) => {
        impl Word {
            $(
                #[doc = concat!("\"", $text, "\"")]
                pub const $name: Word = Word {
                    text: $text,
                    file: concat!("words/", $file, ".wav"),
                };
            )*

            /// Every recorded word.
            pub const ALL: &'static [Word] = &[$(Word::$name),*];
        }

        /// The recording of `word`, compiled into the binary.
        #[cfg(feature = "audio")]
        pub fn recording(word: Word) -> &'static [u8] {
            match word.file {
                $(concat!("words/", $file, ".wav") => include_bytes!(
                    concat!(env!("CARGO_MANIFEST_DIR"), "/assets/words/", $file, ".wav")
                ),)*
                _ => &[],
            }
        }
    };
}

words! {
    ZERO: "zero" => "zero",
    ONE: "one" => "one",
    TWO: "two" => "two",
    THREE: "three" => "three",
    FOUR: "four" => "four",
    FIVE: "five" => "five",
    SIX: "six" => "six",
    SEVEN: "seven" => "seven",
    EIGHT: "eight" => "eight",
    NINE: "nine" => "nine",
    TEN: "ten" => "ten",
    ELEVEN: "eleven" => "eleven",
    TWELVE: "twelve" => "twelve",
    THIRTEEN: "thirteen" => "thirteen",
    FOURTEEN: "fourteen" => "fourteen",
    FIFTEEN: "fifteen" => "fifteen",
    SIXTEEN: "sixteen" => "sixteen",
    SEVENTEEN: "seventeen" => "seventeen",
    EIGHTEEN: "eighteen" => "eighteen",
    NINETEEN: "nineteen" => "nineteen",
    TWENTY: "twenty" => "twenty",
    THIRTY: "thirty" => "thirty",
    FORTY: "forty" => "forty",
    FIFTY: "fifty" => "fifty",
    SIXTY: "sixty" => "sixty",
    SEVENTY: "seventy" => "seventy",
    EIGHTY: "eighty" => "eighty",
    NINETY: "ninety" => "ninety",
    HUNDRED: "hundred" => "hundred",
    THOUSAND: "thousand" => "thousand",
    MILLION: "million" => "million",
    BILLION: "billion" => "billion",
    TRILLION: "trillion" => "trillion",
    QUADRILLION: "quadrillion" => "quadrillion",
    QUINTILLION: "quintillion" => "quintillion",
    POINT: "point" => "point",
    FREE: "free" => "free",
    EURO: "euro" => "euro",
    EUROS: "euros" => "euros",
    CENT: "cent" => "cent",
    CENTS: "cents" => "cents",
    DOLLAR: "dollar" => "dollar",
    DOLLARS: "dollars" => "dollars",
    POUND: "pound" => "pound",
    POUNDS: "pounds" => "pounds",
    PENNY: "penny" => "penny",
    PENCE: "pence" => "pence",
    FRANC: "franc" => "franc",
    FRANCS: "francs" => "francs",
    CENTIME: "centime" => "centime",
    CENTIMES: "centimes" => "centimes",
    YEN: "yen" => "yen",
    A: "A" => "letter_a",
    B: "B" => "letter_b",
    C: "C" => "letter_c",
    D: "D" => "letter_d",
    E: "E" => "letter_e",
    F: "F" => "letter_f",
    G: "G" => "letter_g",
    H: "H" => "letter_h",
    I: "I" => "letter_i",
    J: "J" => "letter_j",
    K: "K" => "letter_k",
    L: "L" => "letter_l",
    M: "M" => "letter_m",
    N: "N" => "letter_n",
    O: "O" => "letter_o",
    P: "P" => "letter_p",
    Q: "Q" => "letter_q",
    R: "R" => "letter_r",
    S: "S" => "letter_s",
    T: "T" => "letter_t",
    U: "U" => "letter_u",
    V: "V" => "letter_v",
    W: "W" => "letter_w",
    X: "X" => "letter_x",
    Y: "Y" => "letter_y",
    Z: "Z" => "letter_z",
}

/// One to nineteen, by value (index 0 is zero).
const SMALL: [Word; 20] = [
    Word::ZERO,
    Word::ONE,
    Word::TWO,
    Word::THREE,
    Word::FOUR,
    Word::FIVE,
    Word::SIX,
    Word::SEVEN,
    Word::EIGHT,
    Word::NINE,
    Word::TEN,
    Word::ELEVEN,
    Word::TWELVE,
    Word::THIRTEEN,
    Word::FOURTEEN,
    Word::FIFTEEN,
    Word::SIXTEEN,
    Word::SEVENTEEN,
    Word::EIGHTEEN,
    Word::NINETEEN,
];

/// Twenty to ninety, by tens (index 2 is twenty).
const TENS: [Word; 10] = [
    Word::ZERO,
    Word::TEN,
    Word::TWENTY,
    Word::THIRTY,
    Word::FORTY,
    Word::FIFTY,
    Word::SIXTY,
    Word::SEVENTY,
    Word::EIGHTY,
    Word::NINETY,
];

/// The scale words, largest first.
const SCALES: [(u64, Word); 6] = [
    (1_000_000_000_000_000_000, Word::QUINTILLION),
    (1_000_000_000_000_000, Word::QUADRILLION),
    (1_000_000_000_000, Word::TRILLION),
    (1_000_000_000, Word::BILLION),
    (1_000_000, Word::MILLION),
    (1_000, Word::THOUSAND),
];

/// The letters, A first.
const LETTERS: [Word; 26] = [
    Word::A,
    Word::B,
    Word::C,
    Word::D,
    Word::E,
    Word::F,
    Word::G,
    Word::H,
    Word::I,
    Word::J,
    Word::K,
    Word::L,
    Word::M,
    Word::N,
    Word::O,
    Word::P,
    Word::Q,
    Word::R,
    Word::S,
    Word::T,
    Word::U,
    Word::V,
    Word::W,
    Word::X,
    Word::Y,
    Word::Z,
];

/// How a currency's units are spoken: singular and plural, for the main unit and its cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrencyWords {
    /// One unit.
    pub one: Word,
    /// Any other number of units.
    pub many: Word,
    /// One and many of its hundredth, for a currency with two decimals.
    pub cents: Option<(Word, Word)>,
}

const fn unit(one: Word, many: Word, cents: Option<(Word, Word)>) -> CurrencyWords {
    CurrencyWords { one, many, cents }
}

/// The currencies with words of their own.
pub const CURRENCIES: [(&str, CurrencyWords); 8] = [
    (
        "EUR",
        unit(Word::EURO, Word::EUROS, Some((Word::CENT, Word::CENTS))),
    ),
    (
        "USD",
        unit(Word::DOLLAR, Word::DOLLARS, Some((Word::CENT, Word::CENTS))),
    ),
    (
        "CAD",
        unit(Word::DOLLAR, Word::DOLLARS, Some((Word::CENT, Word::CENTS))),
    ),
    (
        "AUD",
        unit(Word::DOLLAR, Word::DOLLARS, Some((Word::CENT, Word::CENTS))),
    ),
    (
        "NZD",
        unit(Word::DOLLAR, Word::DOLLARS, Some((Word::CENT, Word::CENTS))),
    ),
    (
        "GBP",
        unit(Word::POUND, Word::POUNDS, Some((Word::PENNY, Word::PENCE))),
    ),
    (
        "CHF",
        unit(
            Word::FRANC,
            Word::FRANCS,
            Some((Word::CENTIME, Word::CENTIMES)),
        ),
    ),
    ("JPY", unit(Word::YEN, Word::YEN, None)),
];

/// The words of `currency`, if it has its own and they fit its decimals (cents for two, none
/// for none).
pub fn currency_words(currency: Currency) -> Option<CurrencyWords> {
    let (_, words) = CURRENCIES
        .into_iter()
        .find(|(code, _)| *code == currency.as_str())?;
    match (currency.decimals(), words.cents) {
        (0, None) | (2, Some(_)) => Some(words),
        _ => None,
    }
}

/// `n` in words: "zero", "seven", "one hundred twenty three", "two thousand five".
pub fn number(n: u64) -> Vec<Word> {
    let mut out = Vec::new();
    if n == 0 {
        out.push(Word::ZERO);
        return out;
    }
    let mut rest = n;
    for (scale, word) in SCALES {
        if rest >= scale {
            below_thousand(rest / scale, &mut out);
            out.push(word);
            rest %= scale;
        }
    }
    below_thousand(rest, &mut out);
    out
}

/// 1 to 999 (nothing for 0).
fn below_thousand(n: u64, out: &mut Vec<Word>) {
    let (hundreds, rest) = ((n / 100) as usize, (n % 100) as usize);
    if hundreds > 0 {
        out.push(SMALL[hundreds % 10]);
        out.push(Word::HUNDRED);
    }
    match rest {
        0 => {}
        1..=19 => out.push(SMALL[rest]),
        _ => {
            out.push(TENS[rest / 10]);
            if rest % 10 > 0 {
                out.push(SMALL[rest % 10]);
            }
        }
    }
}

/// A price in minor units of `currency`, as words: never empty (see the module docs).
pub fn amount(minor: u64, currency: Currency) -> Vec<Word> {
    if minor == 0 {
        return vec![Word::FREE];
    }
    let decimals = currency.decimals();
    let unit = 10u64.pow(decimals);
    let (major, frac) = (minor / unit, minor % unit);
    let Some(words) = currency_words(currency) else {
        return by_code(major, frac, decimals, currency);
    };
    let count = |n: u64, one: Word, many: Word| {
        let mut w = number(n);
        w.push(if n == 1 { one } else { many });
        w
    };
    let mut out = Vec::new();
    if major > 0 {
        out.extend(count(major, words.one, words.many));
    }
    if let (true, Some((one, many))) = (frac > 0, words.cents) {
        out.extend(count(frac, one, many));
    }
    out
}

/// "twelve point five zero S E K": the number, its decimals digit by digit, the code's letters.
fn by_code(major: u64, frac: u64, decimals: u32, currency: Currency) -> Vec<Word> {
    let mut out = number(major);
    if frac > 0 {
        out.push(Word::POINT);
        let digits = format!("{frac:0width$}", width = decimals as usize);
        out.extend(digits.bytes().map(|d| SMALL[usize::from(d - b'0')]));
    }
    out.extend(
        currency
            .as_str()
            .bytes()
            .filter(u8::is_ascii_uppercase)
            .map(|c| LETTERS[usize::from(c - b'A')]),
    );
    out
}

/// Words as one line of text: "seven euros fifty cents".
pub fn sentence(words: &[Word]) -> String {
    words.iter().map(|w| w.text()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).expect("currency")
    }

    fn said(minor: u64, code: &str) -> String {
        sentence(&amount(minor, cur(code)))
    }

    #[test]
    fn prices_in_words() {
        assert_eq!(said(750, "EUR"), "seven euros fifty cents");
        assert_eq!(said(100, "EUR"), "one euro");
        assert_eq!(said(101, "EUR"), "one euro one cent");
        assert_eq!(said(5, "EUR"), "five cents");
        assert_eq!(said(0, "EUR"), "free");
        assert_eq!(said(2_000, "EUR"), "twenty euros");
        assert_eq!(
            said(123_456, "USD"),
            "one thousand two hundred thirty four dollars fifty six cents"
        );
        assert_eq!(said(250, "GBP"), "two pounds fifty pence");
        assert_eq!(said(1, "GBP"), "one penny");
        assert_eq!(said(350, "CHF"), "three francs fifty centimes");
        assert_eq!(said(300, "JPY"), "three hundred yen");
        assert_eq!(said(1, "JPY"), "one yen");
        assert_eq!(said(1_250, "SEK"), "twelve point five zero S E K");
        assert_eq!(said(1_200, "SEK"), "twelve S E K");
        assert_eq!(said(7, "SEK"), "zero point zero seven S E K");
        assert_eq!(said(1_250, "KWD"), "one point two five zero K W D");
        assert_eq!(said(5_000, "KRW"), "five thousand K R W");
    }

    #[test]
    fn numbers_in_words() {
        let n = |n| sentence(&number(n));
        assert_eq!(n(0), "zero");
        assert_eq!(n(13), "thirteen");
        assert_eq!(n(40), "forty");
        assert_eq!(n(99), "ninety nine");
        assert_eq!(n(100), "one hundred");
        assert_eq!(n(2_005), "two thousand five");
        assert_eq!(n(1_000_000), "one million");
        assert_eq!(n(110_011_000), "one hundred ten million eleven thousand");
        assert_eq!(
            n(u64::MAX),
            "eighteen quintillion four hundred forty six quadrillion seven hundred forty four \
             trillion seventy three billion seven hundred nine million five hundred fifty one \
             thousand six hundred fifteen"
        );
    }

    #[test]
    fn currency_words_fit_their_decimals() {
        for (code, words) in CURRENCIES {
            let c = cur(code);
            assert_eq!(currency_words(c), Some(words), "{code}");
            assert_eq!(words.cents.is_some(), c.decimals() == 2, "{code}");
        }
        assert_eq!(currency_words(cur("SEK")), None);
    }

    #[test]
    fn words_are_distinct_and_filed_apart() {
        let texts: HashSet<_> = Word::ALL.iter().map(|w| w.text()).collect();
        let files: HashSet<_> = Word::ALL.iter().map(|w| w.file_name()).collect();
        assert_eq!(texts.len(), Word::ALL.len());
        assert_eq!(files.len(), Word::ALL.len());
        assert!(Word::ALL
            .iter()
            .all(|w| w.file_name().starts_with("words/")));
    }

    /// `device/assets/generate.sh` records exactly these words, with these texts.
    #[test]
    fn the_script_records_the_table() {
        let script = include_str!("../assets/generate.sh");
        let listed: HashSet<(String, String)> = script
            .lines()
            .filter_map(|l| l.strip_prefix("word "))
            .map(|l| {
                let (file, text) = l.split_once(' ').expect("word FILE \"TEXT\"");
                let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
                (
                    format!("words/{file}.wav"),
                    text.expect("quoted").to_owned(),
                )
            })
            .collect();
        let table: HashSet<(String, String)> = Word::ALL
            .iter()
            .map(|w| (w.file_name().to_owned(), w.text().to_owned()))
            .collect();
        assert_eq!(listed, table);
    }

    /// The value of number words ("one hundred twenty three" → 123).
    fn value(words: &[Word]) -> u64 {
        let (mut total, mut group) = (0u64, 0u64);
        for w in words {
            if let Some(v) = SMALL.iter().position(|s| s == w) {
                group += v as u64;
            } else if let Some(t) = TENS.iter().position(|s| s == w) {
                group += 10 * t as u64;
            } else if *w == Word::HUNDRED {
                group *= 100;
            } else if let Some((scale, _)) = SCALES.iter().find(|(_, s)| s == w) {
                total += group * scale;
                group = 0;
            } else {
                panic!("not a number word: {w}");
            }
        }
        total + group
    }

    /// Reads spoken words back into minor units, as a listener would.
    fn read_back(words: &[Word], currency: Currency) -> u64 {
        if words == [Word::FREE] {
            return 0;
        }
        let unit = 10u64.pow(currency.decimals());
        if let Some(cw) = currency_words(currency) {
            let mut total = 0;
            let mut start = 0;
            for (i, w) in words.iter().enumerate() {
                let n = || value(&words[start..i]);
                if *w == cw.one || *w == cw.many {
                    if cw.one != cw.many {
                        assert_eq!(*w == cw.one, n() == 1, "{words:?}");
                    }
                    total += n() * unit;
                    start = i + 1;
                } else if cw.cents.is_some_and(|(one, many)| *w == one || *w == many) {
                    total += n();
                    start = i + 1;
                }
            }
            assert_eq!(start, words.len(), "every number has its unit: {words:?}");
            return total;
        }
        let letters = words.iter().filter(|w| LETTERS.contains(w)).count();
        let spoken = &words[..words.len() - letters];
        let code: String = words[spoken.len()..].iter().map(|w| w.text()).collect();
        assert_eq!(code, currency.as_str());
        match spoken.iter().position(|w| *w == Word::POINT) {
            None => value(spoken) * unit,
            Some(p) => {
                let digits: String = spoken[p + 1..]
                    .iter()
                    .map(|w| value(&[*w]).to_string())
                    .collect();
                assert_eq!(digits.len(), currency.decimals() as usize);
                value(&spoken[..p]) * unit + digits.parse::<u64>().expect("digits")
            }
        }
    }

    proptest! {
        /// Every amount is spoken, with recorded words only, and a listener hears the amount.
        #[test]
        fn every_amount_is_spoken_exactly(
            minor in prop_oneof![0..=1_000_000u64, any::<u64>()],
            code in prop::sample::select(vec!["EUR", "GBP", "JPY", "CHF", "SEK", "KWD", "XAF"]),
        ) {
            let currency = cur(code);
            let words = amount(minor, currency);
            prop_assert!(!words.is_empty());
            let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
            for w in &words {
                prop_assert!(Word::ALL.contains(w));
                prop_assert!(assets.join(w.file_name()).is_file(), "{} missing", w.file_name());
            }
            prop_assert_eq!(read_back(&words, currency), minor);
        }
    }
}
