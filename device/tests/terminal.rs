//! A sales terminal on fake hardware against the real bridge: the prompts of the sales flow, and
//! a product only the bridge's fares file knows, sold at its price.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{buy, DeviceStack, Rig, Stack, WAIT};
use tapgate_device::digits::DisplayText;
use tapgate_device::prompt::{Prompt, Sound};
use tapgate_protocol::{Currency, DeviceId, DeviceKind, ProductId, Topics};
use tapgate_testkit::MqttProbe;

#[tokio::test]
async fn sales_flow_prompts_in_order() {
    let stack = Stack::start(|_| {}).await;
    let mut t = Rig::terminal(stack.device_config("t1")).await;

    // A button with no sale: tap your card first.
    t.press(ProductId::SINGLE_USE);
    assert_eq!(t.sounds(1).await, vec![Sound::Say(Prompt::TapCardFirst)]);

    // The full sale.
    buy(&mut t, "CARD1", ProductId::TEN_TRIP).await;

    // The same card again: it already has a pass.
    tokio::time::sleep(Duration::from_millis(150)).await;
    t.tap("CARD1");
    assert_eq!(t.sounds(1).await, vec![Sound::Say(Prompt::AlreadyHasPass)]);

    // Another card confirms someone else's sale: cancelled.
    t.tap("CARD2");
    assert_eq!(t.sounds(1).await, vec![Sound::Say(Prompt::SelectPass)]);
    t.press(ProductId::TWO_HOUR);
    assert_eq!(t.sounds(2).await[1], Sound::Say(Prompt::TapToConfirm));
    t.tap("CARD3");
    assert_eq!(
        t.sounds(2).await,
        vec![Sound::Buzzer, Sound::Say(Prompt::CardMismatch)]
    );

    // A card held on the reader is one tap: one prompt, not many.
    for _ in 0..5 {
        t.tap("CARD4");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.sounds(1).await, vec![Sound::Say(Prompt::SelectPass)]);
    assert_eq!(t.quiet_for(Duration::from_millis(500)).await, vec![]);
    t.stop().await;
}

/// The operator's fares: a product the built-in catalogue does not have.
const FARES: &str = r#"
currency = "EUR"
time_zone = "UTC"

[[product]]
id = "SINGLE"
name = "Single trip"
price = 250
validity = "single"

[[product]]
id = "DAY"
name = "Day pass"
price = 750
validity = "period"
duration = "24h"
"#;

/// A terminal whose button sells `DAY`, a product only the fares file knows, sells it at its
/// price: no code names it. The bridge lists it with its price, asks 750 for it, and takes 750;
/// the rider hears the generic thanks, and a gate lets them in on it.
#[tokio::test]
async fn sells_a_product_only_the_fares_file_knows() {
    const DAY: ProductId = ProductId::from_static("DAY");
    let dir = tempfile::tempdir().expect("tmp");
    let fares = dir.path().join("fares.toml");
    std::fs::write(&fares, FARES).expect("write the fares");
    let stack = Stack::start(|c| c.fares = Some(fares.clone())).await;
    let decisions =
        Topics::default().decision(DeviceKind::Terminal, &DeviceId::new("t1").expect("id"));
    let mut watch = MqttProbe::connect(stack.broker.port(), "watch-t1").await;
    watch.subscribe(&decisions).await;
    let mut cfg = stack.device_config("t1");
    cfg.buttons = vec![ProductId::from_static("SINGLE"), DAY];
    let mut t = Rig::terminal(cfg).await;

    assert_eq!(
        buy(&mut t, "CARD7", DAY).await,
        Sound::price("Day pass", 750, Currency::EUR),
        "named and priced from the fares file"
    );
    assert!(t.shown().contains(&" 7.50".to_string()), "{:?}", t.shown());
    let listed = watch.expect_on(&decisions, WAIT).await.json();
    assert_eq!(listed["outcome"], "select_pass", "{listed}");
    assert_eq!(
        listed["products"][1],
        json!({"id": "DAY", "name": "Day pass", "price": 750, "currency": "EUR"}),
        "{listed}"
    );
    let chosen = watch.expect_on(&decisions, WAIT).await.json();
    assert_eq!(
        (
            &chosen["outcome"],
            &chosen["selected"],
            &chosen["price"],
            &chosen["currency"]
        ),
        (
            &json!("tap_to_confirm"),
            &json!("DAY"),
            &json!(750),
            &json!("EUR")
        ),
        "{chosen}"
    );
    let issued = watch.expect_on(&decisions, WAIT).await.json();
    assert_eq!(issued["outcome"], "pass_issued", "{issued}");
    assert_eq!(issued["pass"]["type"], "DAY", "{issued}");
    assert_eq!(
        (&issued["price"], &issued["currency"]),
        (&json!(750), &json!("EUR"))
    );
    t.stop().await;

    // The day pass opens a gate; its 24 hours start there, and the display shows them.
    let mut g = Rig::gate(stack.device_config("g1")).await;
    g.tap("CARD7");
    assert_eq!(
        g.sounds(2).await,
        vec![Sound::Chime, Sound::Say(Prompt::AccessGranted)]
    );
    g.displays(DisplayText::time_left(24 * 3_600_000)).await;
    // Green goes out (300 ms in these tests) and the display with it.
    g.displays(DisplayText::BLANK).await;
    g.stop().await;
}
