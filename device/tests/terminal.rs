//! A sales terminal on fake hardware against the real bridge: the prompts of the sales flow.

mod support;

use std::time::Duration;

use support::{buy, DeviceStack, Rig, Stack};
use tapgate_device::prompt::{Prompt, Sound};
use tapgate_protocol::PassType;

#[tokio::test]
async fn sales_flow_prompts_in_order() {
    let stack = Stack::start(|_| {}).await;
    let mut t = Rig::terminal(stack.device_config("t1")).await;

    // A button with no sale: tap your card first.
    t.press(PassType::SingleUse);
    assert_eq!(t.sounds(1).await, vec![Sound::Say(Prompt::TapCardFirst)]);

    // The full sale.
    buy(&mut t, "CARD1", PassType::TenTrip).await;

    // The same card again: it already has a pass.
    tokio::time::sleep(Duration::from_millis(150)).await;
    t.tap("CARD1");
    assert_eq!(t.sounds(1).await, vec![Sound::Say(Prompt::AlreadyHasPass)]);

    // Another card confirms someone else's sale: cancelled.
    t.tap("CARD2");
    assert_eq!(t.sounds(1).await, vec![Sound::Say(Prompt::SelectPass)]);
    t.press(PassType::TwoHour);
    assert_eq!(t.sounds(1).await, vec![Sound::Say(Prompt::TapToConfirm)]);
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
