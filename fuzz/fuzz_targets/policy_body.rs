//! The policy API's body parser (`PUT /api/v1/policies/...`; axum caps the body at 64 KiB before
//! it): never panics, accepts only weights summing to 100, and whatever it accepts round-trips:
//! the policy written back as JSON (as `GET` shows it) parses to the same policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skybridge_federator::api::policy::{PolicyDto, parse_policy};

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = parse_policy(data) else { return };
    let weights: u32 = policy.weights.values().sum();
    assert!(policy.weights.is_empty() || weights == 100, "weights summing to {weights} accepted");
    let json = serde_json::to_vec(&PolicyDto::from(&policy)).expect("a policy serializes");
    let again = parse_policy(&json).expect("a policy written back parses");
    assert_eq!(again, policy);
});
