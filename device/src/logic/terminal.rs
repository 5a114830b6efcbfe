//! The sales terminal as a pure state machine.
//!
//! The bridge keeps the sale; the terminal publishes every new tap and every button press and
//! plays the prompt for each decision of the sales flow: `select_pass` → "select a pass",
//! `tap_to_confirm` → "tap your card to confirm", `pass_issued` → chime and "thank you for your
//! pass", `already_has_pass`, `card_mismatch` ("different card — transaction cancelled"),
//! `tap_card_first` (a button with no sale) and `denied` (a blocked card). A message without a
//! decision by its deadline gets "service unavailable". Decisions for ids the terminal is not
//! waiting for are ignored with a log line, and so is a `stale` answer (the message reached the
//! bridge after its decision window; nothing was done). Every message is stamped with the wall
//! clock's time and `online`: a terminal always waits for its answer.
//!
//! Products are data. A button is known by its position; [`TerminalSettings::buttons`] says which
//! product it sells. The terminal learns the products' names and prices from the `select_pass`
//! answer and shows them: the menu of its buttons, the chosen product and its price, what was
//! paid. It speaks them too: the chosen product's name and price before "tap your card to
//! confirm", and the name and the price paid after the thank-you ([`Sound::Price`]). A product
//! with a thank-you recorded for it hears that one; any other the generic.
//!
//! The four-digit display shows the chosen product's price from `tap_to_confirm`, and the price
//! paid from `pass_issued`, each for [`TerminalSettings::display_for`]; every other decision, and
//! a decision that does not come, blanks it.

use std::time::Duration;

use tapgate_protocol::fares::MAX_NAME_CHARS;
use tapgate_protocol::text::escape_untrusted;
use tapgate_protocol::{
    Button, CardId, Currency, Decision, MessageId, Offer, Outcome, PassInfo, ProductId,
    RejectReason, Stamp, Tap,
};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{system_clock, Command, Outbound, TapDebouncer, TapIds, WallClock};
use crate::digits::{DisplayText, Readout};
use crate::prompt::{describe_denial, money, pass_left, price_line, Prompt, Sound, RATE_LIMITED};

/// The buttons of a terminal not told otherwise: the built-in catalogue's products, in its order.
pub const DEFAULT_BUTTONS: [ProductId; 3] = [
    ProductId::SINGLE_USE,
    ProductId::TEN_TRIP,
    ProductId::TWO_HOUR,
];

/// Timing and buttons of a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalSettings {
    /// How long to wait for a decision.
    pub decision_timeout: Duration,
    /// Reader-level debounce: the same card within this window is the same tap.
    pub card_hold: Duration,
    /// Most messages awaiting a decision at once; older ones are given up.
    pub max_pending: usize,
    /// The product each button sells, by the button's position.
    pub buttons: Vec<ProductId>,
    /// How long a price stays on the four-digit display, unless the next decision blanks it.
    pub display_for: Duration,
}

impl Default for TerminalSettings {
    fn default() -> Self {
        Self {
            decision_timeout: Duration::from_millis(1500),
            card_hold: Duration::from_secs(2),
            max_pending: 16,
            buttons: DEFAULT_BUTTONS.to_vec(),
            display_for: Duration::from_secs(30),
        }
    }
}

/// A sales terminal's logic.
pub struct Terminal {
    settings: TerminalSettings,
    ids: TapIds,
    debounce: TapDebouncer,
    pending: Vec<(MessageId, Instant)>,
    clock: WallClock,
    /// The products on sale, as the last `select_pass` listed them (names made safe to show).
    offers: Vec<Offer>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("settings", &self.settings)
            .field("pending", &self.pending)
            .field("offers", &self.offers)
            .finish_non_exhaustive()
    }
}

impl Terminal {
    /// A terminal whose process started at `boot_ms` (Unix ms, for message ids).
    pub fn new(settings: TerminalSettings, boot_ms: u64) -> Self {
        Self {
            ids: TapIds::new(boot_ms),
            debounce: TapDebouncer::new(settings.card_hold),
            settings,
            pending: Vec::new(),
            clock: system_clock(),
            offers: Vec::new(),
        }
    }

    /// The same terminal stamping its messages with `clock`.
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Ids awaiting a decision, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &MessageId> {
        self.pending.iter().map(|(id, _)| id)
    }

    /// When [`Terminal::tick`] must next be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|(_, d)| *d).min()
    }

    /// The reader saw `card` at `now`.
    pub fn card(&mut self, card: CardId, now: Instant) -> Vec<Command> {
        if !self.debounce.is_new_tap(&card, now) {
            return Vec::new();
        }
        let id = self.track(now);
        info!(%id, "Card tapped");
        let stamp = Stamp::online(self.clock.now_ms());
        vec![Command::Publish(Outbound::Tap(Tap::new(id, card), stamp))]
    }

    /// The button at `position` (from 0) was pressed at `now`: it asks for the product the
    /// settings give it. A button beyond the settings sells nothing.
    pub fn press(&mut self, position: usize, now: Instant) -> Vec<Command> {
        let Some(&pass) = self.settings.buttons.get(position) else {
            warn!(
                button = position + 1,
                buttons = self.settings.buttons.len(),
                "Button ignored: no product is set for it"
            );
            return Vec::new();
        };
        let id = self.track(now);
        info!(%id, button = position + 1, %pass, "Button pressed");
        let stamp = Stamp::online(self.clock.now_ms());
        vec![Command::Publish(Outbound::Button(
            Button { id, pass },
            stamp,
        ))]
    }

    fn track(&mut self, now: Instant) -> MessageId {
        let id = self.ids.next_id();
        if self.pending.len() >= self.settings.max_pending {
            let (old, _) = self.pending.remove(0);
            warn!(id = %old, "Too many messages awaiting decisions; giving up the oldest");
        }
        self.pending
            .push((id.clone(), now + self.settings.decision_timeout));
        id
    }

    /// A decision arrived on the terminal's decision topic.
    pub fn decision(&mut self, decision: &Decision) -> Vec<Command> {
        let outcome = decision.outcome.name();
        let pos = decision
            .id
            .as_ref()
            .and_then(|id| self.pending.iter().position(|(p, _)| p == id));
        let Some(pos) = pos else {
            let id = decision
                .id
                .as_ref()
                .map(MessageId::as_str)
                .unwrap_or("null");
            info!(id, outcome, "Decision ignored: not awaited");
            return Vec::new();
        };
        self.pending.remove(pos);
        let say = |p| Command::Play(Sound::Say(p));
        let mut cmds = vec![self.display(readout(decision))];
        cmds.extend(match &decision.outcome {
            Outcome::SelectPass { products } => self.offer(products),
            Outcome::TapToConfirm {
                selected,
                price,
                currency,
            } => self.quote(*selected, *price, *currency),
            Outcome::PassIssued {
                pass,
                price,
                currency,
            } => self.issued(pass, *price, *currency),
            Outcome::ToppedUp {
                selected,
                price,
                currency,
            } => self.topped_up(*selected, *price, *currency, decision.balance),
            Outcome::AlreadyHasPass { pass } => vec![
                say(Prompt::AlreadyHasPass),
                Command::Show(self.describe(pass)),
            ],
            Outcome::CardMismatch => vec![Command::Play(Sound::Buzzer), say(Prompt::CardMismatch)],
            Outcome::TapCardFirst => vec![say(Prompt::TapCardFirst)],
            Outcome::Denied { reason } => vec![
                Command::Play(Sound::Buzzer),
                say(Prompt::AccessDenied),
                Command::Show(describe_denial(*reason).into()),
            ],
            Outcome::Rejected { reason, detail } => rejected(*reason, detail),
            Outcome::Stale => {
                warn!(
                    outcome,
                    "Message reached the bridge too late; nothing was done"
                );
                vec![Command::Play(Sound::Say(Prompt::ServiceUnavailable))]
            }
            Outcome::Granted { .. }
            | Outcome::EntrySettled { .. }
            | Outcome::UnpaidEntry { .. } => {
                warn!(outcome, "Unexpected outcome at a terminal");
                vec![Command::Play(Sound::Buzzer)]
            }
        });
        cmds
    }

    /// The first step of a sale: the products on sale (learnt from the bridge), said and listed.
    fn offer(&mut self, products: &[Offer]) -> Vec<Command> {
        self.learn(products);
        let mut cmds = vec![Command::Play(Sound::Say(Prompt::SelectPass))];
        cmds.extend(self.menu().map(Command::Show));
        cmds
    }

    /// A product chosen: its price said and shown, and the rider asked to tap the same card.
    fn quote(&self, selected: ProductId, price: u64, currency: Currency) -> Vec<Command> {
        let name = self.name_of(selected);
        vec![
            Command::Play(Sound::price(name.as_str(), price, currency)),
            Command::Play(Sound::Say(Prompt::TapToConfirm)),
            Command::Show(format!(
                "{}: tap the same card to pay",
                price_line(&name, price, currency)
            )),
        ]
    }

    /// A pass sold: thanks, what was paid, and what the pass holds.
    fn issued(&self, pass: &PassInfo, price: u64, currency: Currency) -> Vec<Command> {
        vec![
            Command::Play(Sound::Chime),
            Command::Play(Sound::Say(Prompt::thank_you(pass.pass_type))),
            Command::Play(Sound::price(self.name_of(pass.pass_type), price, currency)),
            Command::Show(format!("Paid {}", money(price, currency))),
            Command::Show(self.describe(pass)),
        ]
    }

    /// A balance topped up: what was paid, and the balance now (said as owed when below zero).
    fn topped_up(
        &self,
        selected: ProductId,
        price: u64,
        currency: Currency,
        balance: Option<i64>,
    ) -> Vec<Command> {
        let mut cmds = vec![
            Command::Play(Sound::Chime),
            Command::Play(Sound::price(self.name_of(selected), price, currency)),
            Command::Show(format!("Topped up {}", money(price, currency))),
        ];
        if let Some(b) = balance {
            let owed = if b < 0 { "balance owed" } else { "balance" };
            cmds.push(Command::Play(Sound::price(
                owed,
                b.unsigned_abs(),
                currency,
            )));
            cmds.push(Command::Show(format!("Balance {}", currency.format(b))));
        }
        cmds
    }

    /// `text` on the four-digit display for [`TerminalSettings::display_for`].
    fn display(&self, text: DisplayText) -> Command {
        Command::Display(Readout {
            text,
            hold: self.settings.display_for,
        })
    }

    /// Keeps the products a `select_pass` listed (an answer without a list keeps what was known).
    fn learn(&mut self, products: &[Offer]) {
        if products.is_empty() {
            return;
        }
        self.offers = products
            .iter()
            .map(|o| Offer {
                name: escape_untrusted(o.name.trim(), MAX_NAME_CHARS),
                ..o.clone()
            })
            .collect();
        for (n, pass) in self.settings.buttons.iter().enumerate() {
            if !self.offers.iter().any(|o| o.id == *pass) {
                warn!(button = n + 1, %pass, "Button sells a product the bridge does not offer");
            }
        }
    }

    /// The buttons and what they sell, as one line: `1 Single 2.50 EUR  2 Day pass 7.50 EUR`.
    /// Before the products are known, the buttons' product ids; a product not on offer is left
    /// out. `None` when no button sells anything on offer.
    pub fn menu(&self) -> Option<String> {
        let items: Vec<String> = self
            .settings
            .buttons
            .iter()
            .enumerate()
            .filter_map(|(n, pass)| {
                let n = n + 1;
                if self.offers.is_empty() {
                    return Some(format!("{n} {pass}"));
                }
                let o = self.offers.iter().find(|o| o.id == *pass)?;
                Some(format!("{n} {} {}", o.name, money(o.price, o.currency)))
            })
            .collect();
        (!items.is_empty()).then(|| items.join("  "))
    }

    /// A product's name as the bridge listed it, or its id.
    fn name_of(&self, product: ProductId) -> String {
        self.offers
            .iter()
            .find(|o| o.id == product)
            .map_or_else(|| product.to_string(), |o| o.name.clone())
    }

    /// A pass in one line: its product's name and what is left on it.
    fn describe(&self, pass: &PassInfo) -> String {
        let name = self.name_of(pass.pass_type);
        match pass_left(pass) {
            Some(left) => format!("{name}: {left}"),
            None => name,
        }
    }

    /// Time passed: messages whose decision is overdue get "service unavailable" (once).
    pub fn tick(&mut self, now: Instant) -> Vec<Command> {
        let before = self.pending.len();
        self.pending.retain(|(id, deadline)| {
            let overdue = *deadline <= now;
            if overdue {
                warn!(%id, "No decision in time");
            }
            !overdue
        });
        if self.pending.len() == before {
            return Vec::new();
        }
        vec![
            self.display(DisplayText::BLANK),
            Command::Play(Sound::Buzzer),
            Command::Play(Sound::Say(Prompt::ServiceUnavailable)),
        ]
    }
}

/// The bridge refused the terminal's message (`reason`, `detail`): a buzzer, and why on the
/// screen; over the rate limit, in words.
fn rejected(reason: RejectReason, detail: &str) -> Vec<Command> {
    if reason == RejectReason::RateLimited {
        warn!(
            detail,
            "Message refused: this terminal is over the bridge's rate limit"
        );
        return vec![
            Command::Play(Sound::Buzzer),
            Command::Show(RATE_LIMITED.into()),
        ];
    }
    warn!(%reason, detail, "Message rejected by the bridge");
    vec![
        Command::Play(Sound::Buzzer),
        Command::Show(format!("rejected: {reason}")),
    ]
}

/// What the four-digit display shows for `decision`: the price to pay or paid, the balance after
/// a top-up (dashes when the bridge did not say), else nothing.
fn readout(decision: &Decision) -> DisplayText {
    match &decision.outcome {
        Outcome::TapToConfirm {
            price, currency, ..
        }
        | Outcome::PassIssued {
            price, currency, ..
        } => DisplayText::price(*price, *currency),
        Outcome::ToppedUp { currency, .. } => decision
            .balance
            .and_then(|b| u64::try_from(b).ok())
            .map_or(DisplayText::DASHES, |b| DisplayText::price(b, *currency)),
        _ => DisplayText::BLANK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_protocol::{Currency, DenyReason, RejectReason};

    const DAY: ProductId = ProductId::from_static("DAY");

    fn card(s: &str) -> CardId {
        CardId::new(s).expect("card")
    }

    fn published(cmds: &[Command]) -> MessageId {
        match cmds {
            [Command::Publish(o)] => o.id().clone(),
            other => panic!("expected one publish: {other:?}"),
        }
    }

    fn answer(t: &mut Terminal, id: &MessageId, outcome: Outcome) -> Vec<Command> {
        t.decision(&Decision::new(Some(id.clone()), outcome))
    }

    fn prompts(cmds: &[Command]) -> Vec<Prompt> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Play(Sound::Say(p)) => Some(*p),
                _ => None,
            })
            .collect()
    }

    fn shown(cmds: &[Command]) -> Vec<&str> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Show(line) => Some(line.as_str()),
                _ => None,
            })
            .collect()
    }

    fn sounds(cmds: &[Command]) -> Vec<Sound> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Play(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// What the four-digit display is told to show, as text; every decision tells it something.
    fn displayed(cmds: &[Command]) -> Vec<String> {
        let texts: Vec<String> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::Display(r) => {
                    assert_eq!(r.hold, Duration::from_secs(30));
                    Some(r.text.to_string())
                }
                _ => None,
            })
            .collect();
        assert!(
            matches!(cmds.first(), Some(Command::Display(_))),
            "the display first: {cmds:?}"
        );
        texts
    }

    fn offer(id: ProductId, name: &str, price: u64) -> Offer {
        Offer {
            id,
            name: name.into(),
            price,
            currency: Currency::EUR,
        }
    }

    fn select(products: Vec<Offer>) -> Outcome {
        Outcome::SelectPass { products }
    }

    fn pass(id: ProductId, trips: Option<u32>) -> PassInfo {
        PassInfo {
            pass_type: id,
            trips_remaining: trips,
            expires_at: None,
            remaining_ms: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn messages_are_stamped_and_stale_answers_sell_nothing() {
        let wall = super::super::ManualClock::at(1_700_000_000_000);
        let mut t = Terminal::new(TerminalSettings::default(), 7)
            .with_clock(std::sync::Arc::new(wall.clone()));
        let now = Instant::now();
        let cmds = t.card(card("C1"), now);
        let [Command::Publish(tap)] = cmds.as_slice() else {
            panic!("{cmds:?}");
        };
        assert_eq!(tap.stamp(), Stamp::online(1_700_000_000_000));
        wall.advance(250);
        let cmds = t.press(1, now);
        let [Command::Publish(press)] = cmds.as_slice() else {
            panic!("{cmds:?}");
        };
        assert_eq!(press.stamp(), Stamp::online(1_700_000_000_250));
        // Too late at the bridge: nothing was done; the rider hears the service is unavailable.
        let cmds = answer(&mut t, tap.id(), Outcome::Stale);
        assert_eq!(prompts(&cmds), vec![Prompt::ServiceUnavailable]);
        assert!(!cmds
            .iter()
            .any(|c| matches!(c, Command::Play(Sound::Chime))));
        // Already answered: a repeat is ignored.
        assert!(answer(&mut t, tap.id(), Outcome::Stale).is_empty());
    }

    /// A top-up: the terminal shows and says what was added and the balance now.
    #[tokio::test(start_paused = true)]
    async fn a_top_up_says_the_amount_and_the_balance() {
        let top = ProductId::from_static("TOPUP_10");
        let settings = TerminalSettings {
            buttons: vec![top],
            ..TerminalSettings::default()
        };
        let mut t = Terminal::new(settings, 7);
        let now = Instant::now();
        let a = published(&t.card(card("C1"), now));
        answer(&mut t, &a, select(vec![offer(top, "Top up 10.00", 1000)]));
        let b = published(&t.press(0, now));
        answer(
            &mut t,
            &b,
            Outcome::TapToConfirm {
                selected: top,
                price: 1000,
                currency: Currency::EUR,
            },
        );
        let c = published(&t.card(card("C1"), now + Duration::from_secs(3)));
        let cmds = t.decision(&Decision {
            balance: Some(1250),
            balance_currency: Some(Currency::EUR),
            ..Decision::new(
                Some(c),
                Outcome::ToppedUp {
                    selected: top,
                    price: 1000,
                    currency: Currency::EUR,
                },
            )
        });
        assert_eq!(shown(&cmds), ["Topped up 10.00 EUR", "Balance 12.50 EUR"]);
        assert_eq!(displayed(&cmds), ["12.50"]);
        assert!(cmds.contains(&Command::Play(Sound::price("balance", 1250, Currency::EUR))));
        assert!(cmds.contains(&Command::Play(Sound::price(
            "Top up 10.00",
            1000,
            Currency::EUR
        ))));
    }

    #[tokio::test(start_paused = true)]
    async fn full_sale_prompts_in_order() {
        let mut t = Terminal::new(TerminalSettings::default(), 7);
        let now = Instant::now();
        let a = published(&t.card(card("C1"), now));
        let mut heard = prompts(&answer(&mut t, &a, select(Vec::new())));
        let cmds = t.press(1, now);
        assert!(matches!(
            &cmds[0],
            Command::Publish(Outbound::Button(
                Button {
                    pass: ProductId::TEN_TRIP,
                    ..
                },
                Stamp {
                    mode: tapgate_protocol::TapMode::Online,
                    ..
                }
            ))
        ));
        let b = published(&cmds);
        heard.extend(prompts(&answer(
            &mut t,
            &b,
            Outcome::TapToConfirm {
                selected: ProductId::TEN_TRIP,
                price: 0,
                currency: Currency::EUR,
            },
        )));
        let c = published(&t.card(card("C1"), now + Duration::from_secs(3)));
        let issued = answer(
            &mut t,
            &c,
            Outcome::PassIssued {
                pass: pass(ProductId::TEN_TRIP, Some(10)),
                price: 0,
                currency: Currency::EUR,
            },
        );
        assert_eq!(issued[1], Command::Play(Sound::Chime));
        assert_eq!(shown(&issued), ["Paid 0.00 EUR", "TEN_TRIP: 10 trips left"]);
        assert_eq!(displayed(&issued), [" 0.00"]);
        heard.extend(prompts(&issued));
        assert_eq!(
            heard,
            vec![
                Prompt::SelectPass,
                Prompt::TapToConfirm,
                Prompt::thank_you(ProductId::TEN_TRIP)
            ]
        );
        assert_eq!(heard[2].file_name(), "thank_you_ten_trip.wav");
        assert_eq!(t.pending().count(), 0);
        assert_eq!(t.deadline(), None);
    }

    /// A product only the catalogue knows: its button sends its id, the terminal shows its name
    /// and price from the bridge's list and thanks with the generic prompt.
    #[tokio::test(start_paused = true)]
    async fn sells_a_product_it_learns_from_the_bridge() {
        let settings = TerminalSettings {
            buttons: vec![ProductId::SINGLE_USE, DAY, ProductId::TWO_HOUR],
            ..TerminalSettings::default()
        };
        let mut t = Terminal::new(settings, 7);
        let now = Instant::now();
        assert_eq!(
            t.menu().as_deref(),
            Some("1 SINGLE_USE  2 DAY  3 TWO_HOUR"),
            "before the bridge lists them: the ids"
        );
        let a = published(&t.card(card("C1"), now));
        let listed = answer(
            &mut t,
            &a,
            select(vec![
                offer(ProductId::SINGLE_USE, "Single trip", 250),
                offer(DAY, "Day pass", 750),
                offer(ProductId::TEN_TRIP, "Ten trips", 2000),
            ]),
        );
        assert_eq!(prompts(&listed), [Prompt::SelectPass]);
        assert_eq!(displayed(&listed), ["    "]);
        // Button 3 sells a product not on offer: left out of the menu.
        assert_eq!(
            shown(&listed),
            ["1 Single trip 2.50 EUR  2 Day pass 7.50 EUR"]
        );

        let cmds = t.press(1, now);
        let Some(Command::Publish(Outbound::Button(b, _))) = cmds.first() else {
            panic!("{cmds:?}");
        };
        assert_eq!(b.pass, DAY);
        let chosen = answer(
            &mut t,
            &b.id.clone(),
            Outcome::TapToConfirm {
                selected: DAY,
                price: 750,
                currency: Currency::EUR,
            },
        );
        // Its name and price spoken, then the prompt; its price on the display.
        assert_eq!(
            sounds(&chosen),
            [
                Sound::price("Day pass", 750, Currency::EUR),
                Sound::Say(Prompt::TapToConfirm)
            ]
        );
        assert_eq!(
            shown(&chosen),
            ["Day pass, 7.50 EUR: tap the same card to pay"]
        );
        assert_eq!(displayed(&chosen), [" 7.50"]);

        let c = published(&t.card(card("C1"), now + Duration::from_secs(3)));
        let mut day = pass(DAY, None);
        day.remaining_ms = Some(24 * 3_600_000);
        let issued = answer(
            &mut t,
            &c,
            Outcome::PassIssued {
                pass: day.clone(),
                price: 750,
                currency: Currency::EUR,
            },
        );
        assert_eq!(
            sounds(&issued),
            [
                Sound::Chime,
                Sound::Say(Prompt::ThankYou),
                Sound::price("Day pass", 750, Currency::EUR)
            ]
        );
        assert_eq!(
            shown(&issued),
            ["Paid 7.50 EUR", "Day pass: 1d 00h 00m left"]
        );
        assert_eq!(displayed(&issued), [" 7.50"]);

        // Already holding it: named as the bridge names it.
        let d = published(&t.card(card("C1"), now + Duration::from_secs(6)));
        let held = answer(&mut t, &d, Outcome::AlreadyHasPass { pass: day });
        assert_eq!(shown(&held), ["Day pass: 1d 00h 00m left"]);
        assert_eq!(
            displayed(&held),
            ["    "],
            "the next prompt blanks the price"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn names_from_the_bridge_are_shown_as_data() {
        let mut t = Terminal::new(TerminalSettings::default(), 7);
        let a = published(&t.card(card("C1"), Instant::now()));
        let sneaky = offer(ProductId::SINGLE_USE, "Single\u{1b}[2J\u{202e}", 250);
        let listed = answer(&mut t, &a, select(vec![sneaky]));
        let [line] = shown(&listed)[..] else {
            panic!("{listed:?}");
        };
        assert!(
            !line.chars().any(tapgate_protocol::text::is_unsafe),
            "{line:?}"
        );
        assert!(line.starts_with("1 Single\\u{1b}[2J"), "{line:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn any_number_of_buttons() {
        let ids = ["A", "B", "C", "D", "E"].map(|s| ProductId::new(s).expect("id"));
        let settings = TerminalSettings {
            buttons: ids.to_vec(),
            ..TerminalSettings::default()
        };
        let mut t = Terminal::new(settings, 7);
        for (n, id) in ids.iter().enumerate() {
            let cmds = t.press(n, Instant::now());
            let Some(Command::Publish(Outbound::Button(b, _))) = cmds.first() else {
                panic!("{cmds:?}");
            };
            assert_eq!(b.pass, *id);
        }
        // No product for a sixth button: nothing is sent.
        assert!(t.press(5, Instant::now()).is_empty());
        assert_eq!(t.pending().count(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn every_outcome_has_its_prompt() {
        let held = pass(ProductId::TWO_HOUR, None);
        let cases = [
            (
                Outcome::AlreadyHasPass { pass: held },
                vec![Prompt::AlreadyHasPass],
            ),
            (Outcome::CardMismatch, vec![Prompt::CardMismatch]),
            (Outcome::TapCardFirst, vec![Prompt::TapCardFirst]),
            (
                Outcome::Denied {
                    reason: DenyReason::Blocked,
                },
                vec![Prompt::AccessDenied],
            ),
            (
                Outcome::Rejected {
                    reason: RejectReason::UnknownPassType,
                    detail: "x".into(),
                },
                vec![],
            ),
        ];
        for (outcome, expected) in cases {
            let mut t = Terminal::new(TerminalSettings::default(), 7);
            let id = published(&t.press(0, Instant::now()));
            let cmds = answer(&mut t, &id, outcome.clone());
            assert_eq!(prompts(&cmds), expected, "{outcome:?}");
            assert_eq!(displayed(&cmds), ["    "], "{outcome:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stray_decisions_and_timeouts() {
        let mut t = Terminal::new(TerminalSettings::default(), 7);
        let now = Instant::now();
        let stray = MessageId::new("x-1").expect("id");
        assert!(answer(&mut t, &stray, select(Vec::new())).is_empty());
        let a = published(&t.card(card("C1"), now));
        let b = published(&t.press(2, now + Duration::from_millis(500)));
        assert_eq!(t.deadline(), Some(now + Duration::from_millis(1500)));
        // The first times out alone: one "service unavailable".
        let cmds = t.tick(now + Duration::from_millis(1600));
        assert_eq!(prompts(&cmds), vec![Prompt::ServiceUnavailable]);
        assert_eq!(displayed(&cmds), ["    "]);
        assert_eq!(t.pending().collect::<Vec<_>>(), vec![&b]);
        assert!(answer(&mut t, &a, select(Vec::new())).is_empty(), "late");
        assert_eq!(
            prompts(&answer(&mut t, &b, Outcome::TapCardFirst)),
            vec![Prompt::TapCardFirst]
        );
        assert!(t.tick(now + Duration::from_secs(60)).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn held_card_is_one_tap_and_pending_is_bounded() {
        let settings = TerminalSettings {
            max_pending: 2,
            ..TerminalSettings::default()
        };
        let mut t = Terminal::new(settings, 7);
        let now = Instant::now();
        published(&t.card(card("C1"), now));
        assert!(t
            .card(card("C1"), now + Duration::from_millis(50))
            .is_empty());
        published(&t.press(0, now));
        published(&t.press(1, now));
        assert_eq!(t.pending().count(), 2);
    }
}
