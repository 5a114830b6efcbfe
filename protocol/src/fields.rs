//! Field names of the Redis hashes in [`crate::keys`].
//!
//! The bridge's Lua scripts (`bridge/src/store/*.lua`) write these names as literals; a test in
//! the bridge reads the scripts and checks that they use exactly the names listed here for each
//! hash, and no others.

/// Fields of a card's pass hash, [`crate::keys::pass`]: the product, the terms it was sold on in
/// one field, its state and its sale. Records written earlier keep their terms in fields of their
/// own ([`pass::EARLIER`]), or (earlier still) have only `type`, `trips`, `expires_at` and
/// `issued_at`, the type one of `SINGLE_USE`, `TEN_TRIP`, `TWO_HOUR`. [`crate::pass_record`]
/// reads every layout.
pub mod pass {
    /// The product sold.
    pub const TYPE: &str = "type";
    /// The terms it was sold on, `validity trips duration_ms price currency [catalogue version]`
    /// ([`crate::fares::Terms::to_words`]): fixed at the sale, so a gate reads them as one field.
    pub const TERMS: &str = "terms";
    /// A `trips` pass: entries left; `0` for the others.
    pub const TRIPS: &str = "trips";
    /// A `period` pass once activated, a `service_day` pass from its sale: when it stops being
    /// valid, Unix ms.
    pub const EXPIRES_AT: &str = "expires_at";
    /// When the pass was sold, Unix ms.
    pub const ISSUED_AT: &str = "issued_at";
    /// The terminal that sold it (absent on records from before sales kept it).
    pub const SOLD_BY: &str = "sold_by";
    /// The service day its sale was counted on, `YYYY-MM-DD` (the revenue key a void reverses).
    pub const DAY: &str = "day";
    /// When it was first used at a gate, Unix ms; absent while unused (only an unused pass can
    /// be voided).
    pub const USED_AT: &str = "used_at";
    /// Every field written now.
    pub const ALL: [&str; 8] = [
        TYPE, TERMS, TRIPS, EXPIRES_AT, ISSUED_AT, SOLD_BY, DAY, USED_AT,
    ];

    /// Records written before the terms were one field: its validity (`single`, `trips`,
    /// `period`, `service_day`).
    pub const VALIDITY: &str = "validity";
    /// Such a record's `period` length from the first entry, ms.
    pub const DURATION: &str = "duration";
    /// Such a record's price, minor units of `currency`.
    pub const PRICE: &str = "price";
    /// Such a record's currency.
    pub const CURRENCY: &str = "currency";
    /// Such a record's fare catalogue version ([`crate::fares::Catalogue::version`]).
    pub const CATALOGUE: &str = "catalogue";
    /// The fields of records written before the terms were one field: read, never written.
    pub const EARLIER: [&str; 5] = [VALIDITY, DURATION, PRICE, CURRENCY, CATALOGUE];
}

/// Fields of a card's pay-as-you-go wallet, [`crate::keys::wallet`] (see [`crate::payg`]).
pub mod wallet {
    /// What the card holds, minor units (may be negative down to `minimum_balance`).
    pub const BALANCE: &str = "balance";
    /// Every top-up, in all: always `balance` + `charged`.
    pub const TOPPED_UP: &str = "topped_up";
    /// Every fare charged, in all.
    pub const CHARGED: &str = "charged";
    /// The currency of the amounts.
    pub const CURRENCY: &str = "currency";
    /// Per-day and per-week totals before this service day (`YYYY-MM-DD`) were dropped.
    pub const KEPT_FROM: &str = "kept_from";
    /// The fixed fields.
    pub const ALL: [&str; 5] = [BALANCE, TOPPED_UP, CHARGED, CURRENCY, KEPT_FROM];

    /// Charged on a service day: `day:{YYYY-MM-DD}`.
    pub fn day(date: &str) -> String {
        format!("day:{date}")
    }

    /// Charged in the week starting on a Monday: `week:{YYYY-MM-DD}`.
    pub fn week(monday: &str) -> String {
        format!("week:{monday}")
    }
}

/// Fields of a service day's revenue hash, [`crate::keys::revenue`], each incremented in the
/// same atomic step as the sale it counts. Amounts are minor units of the catalogue's currency.
pub mod revenue {
    /// Passes sold that day.
    pub const SALES: &str = "sales";
    /// What they took.
    pub const AMOUNT: &str = "amount";
    /// Sales voided by an operator. A void also takes its sale off `sales`, `amount` and its
    /// product's and terminal's fields, so those are always net of voids.
    pub const VOIDS: &str = "voids";
    /// What the voided sales had taken.
    pub const VOIDED: &str = "voided";
    /// Top-ups sold that day (also counted in `sales` and `amount`: money a terminal took).
    /// Stored value held for riders, not yet fare revenue.
    pub const TOP_UPS: &str = "top_ups";
    /// What the top-ups added to balances.
    pub const TOPPED_UP: &str = "topped_up";
    /// Entries paid as you go on that service day (capped ones too, charged 0).
    pub const FARES: &str = "fares";
    /// What they were charged: fare revenue taken from balances.
    pub const FARE_AMOUNT: &str = "fare_amount";
    /// The fixed fields.
    pub const ALL: [&str; 8] = [
        SALES,
        AMOUNT,
        VOIDS,
        VOIDED,
        TOP_UPS,
        TOPPED_UP,
        FARES,
        FARE_AMOUNT,
    ];

    /// Passes of `product` sold: `product:{PRODUCT}:sales`.
    pub fn product_sales(product: &str) -> String {
        format!("product:{product}:sales")
    }

    /// What `product` took: `product:{PRODUCT}:amount`.
    pub fn product_amount(product: &str) -> String {
        format!("product:{product}:amount")
    }

    /// Passes sold at `terminal`: `terminal:{DEVICE}:sales`.
    pub fn terminal_sales(terminal: &str) -> String {
        format!("terminal:{terminal}:sales")
    }

    /// What `terminal` took: `terminal:{DEVICE}:amount`.
    pub fn terminal_amount(terminal: &str) -> String {
        format!("terminal:{terminal}:amount")
    }
}

/// Fields of a terminal's sale hash, [`crate::keys::sale`].
pub mod sale {
    /// The card that started the sale.
    pub const CARD: &str = "card";
    /// The product chosen with a button; empty until one is.
    pub const SELECTED: &str = "selected";
    /// The chosen product's terms when the button was pressed ([`crate::fares::Terms::to_words`]).
    pub const TERMS: &str = "terms";
    /// When the sale lapses, Unix ms.
    pub const EXPIRES_AT: &str = "expires_at";
    /// Every field.
    pub const ALL: [&str; 4] = [CARD, SELECTED, TERMS, EXPIRES_AT];
}

/// Fields of a device's presence hash, [`crate::keys::device`].
pub mod presence {
    /// `1` while the device says it is online, `0` after its last will or an offline status.
    pub const ONLINE: &str = "online";
    /// When the bridge last heard from the device, Unix ms.
    pub const LAST_SEEN: &str = "last_seen";
    /// The device's uptime at its last heartbeat, s.
    pub const UPTIME_S: &str = "uptime_s";
    /// The device's clock minus the bridge's at its last heartbeat, ms.
    pub const CLOCK_SKEW_MS: &str = "clock_skew_ms";
    /// `1` while the device's clock is flagged as off, else `0`.
    pub const CLOCK_FLAGGED: &str = "clock_flagged";
    /// When the skew was last measured (bridge clock, Unix ms).
    pub const CLOCK_CHECKED_AT: &str = "clock_checked_at";
    /// The fields the clock script writes.
    pub const CLOCK: [&str; 3] = [CLOCK_SKEW_MS, CLOCK_FLAGGED, CLOCK_CHECKED_AT];
    /// Every field.
    pub const ALL: [&str; 6] = [
        ONLINE,
        LAST_SEEN,
        UPTIME_S,
        CLOCK_SKEW_MS,
        CLOCK_FLAGGED,
        CLOCK_CHECKED_AT,
    ];
}

/// Fields of a card's deny-list hash, [`crate::keys::blocked`] (written by the monitor).
pub mod blocked {
    /// Why the card was blocked (`lost`, `stolen`, `fraud`).
    pub const REASON: &str = "reason";
    /// The operator who blocked it.
    pub const BY: &str = "by";
    /// When, Unix ms.
    pub const AT: &str = "at";
    /// Every field.
    pub const ALL: [&str; 3] = [REASON, BY, AT];
}

/// Fields of a name's failed-login hash, [`crate::keys::monitor_login_failures_name`] (written
/// by the monitor).
pub mod login_failures {
    /// Failed logins of the name within the window.
    pub const FAILURES: &str = "failures";
    /// When the name was last tried (Unix ms): its wait runs from then.
    pub const LAST: &str = "last";
    /// Every field.
    pub const ALL: [&str; 2] = [FAILURES, LAST];
}

/// Fields of a per-device counter hash, [`crate::keys::device_counters`].
pub mod device_counters {
    /// Entries granted (online and settled offline).
    pub const GRANTED: &str = "granted";
    /// Taps denied.
    pub const DENIED: &str = "denied";
    /// Passes issued.
    pub const ISSUED: &str = "issued";
    /// Messages refused.
    pub const REJECTED: &str = "rejected";
    /// Offline entries that could not be charged.
    pub const UNPAID: &str = "unpaid";
    /// Waiting messages answered `stale`.
    pub const STALE: &str = "stale";
    /// Every field.
    pub const ALL: [&str; 6] = [GRANTED, DENIED, ISSUED, REJECTED, UNPAID, STALE];
}

/// Fields of [`crate::keys::COUNTERS_CLOCK`].
pub mod clock_counters {
    /// A device's clock was flagged as off.
    pub const FLAGGED: &str = "flagged";
    /// A flagged device's clock came back within the limit.
    pub const CLEARED: &str = "cleared";
    /// Every field.
    pub const ALL: [&str; 2] = [FLAGGED, CLEARED];
}
