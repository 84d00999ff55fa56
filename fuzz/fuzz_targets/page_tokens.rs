//! Fuzz target `page_tokens`: page tokens of ListAccessRequests,
//! ListEvents and ListEmails given to the real store (SQLite fixture with a
//! few requests, its events and emails), and WatchEvents cursors.
//!
//! The first byte picks the list, its filters and the mode (see
//! [`parse_token_selector`]); the rest is a token as a caller sends it
//! (raw), or a payload the target signs with the fixture's key (signed:
//! the forger who knows the key reaches the JSON behind the signature), or
//! the page size of a walk over every page.
//!
//! Properties: nothing panics; a token is served or refused with
//! `InvalidPageToken` (INVALID_ARGUMENT), never a database error; a raw
//! token the server did not make is refused; walking the pages with the
//! server's own tokens returns every item once, in order, like one big
//! page; a cursor `decode_cursor` accepts is the one `encode_cursor` makes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_fuzz::{TokenMode, list_page, parse_token_selector, sign_payload};
use sesame_server::domain::{decode_cursor, encode_cursor};
use sesame_server::store::StoreError;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (list, mode, filtered) = parse_token_selector(selector);
    // Proto strings are UTF-8: tonic refuses other bytes before any handler.
    let text = String::from_utf8_lossy(rest).into_owned();

    if let Some(seq) = decode_cursor(&text) {
        assert!(seq >= 0);
        assert_eq!(encode_cursor(seq), text, "two cursors for one position");
    }

    match mode {
        TokenMode::Raw | TokenMode::Signed => {
            let token = if mode == TokenMode::Signed {
                sign_payload(rest)
            } else {
                text
            };
            match list_page(list, filtered, 2, Some(&token)) {
                Ok(_) => {}
                Err(StoreError::InvalidPageToken(_)) => {}
                Err(other) => panic!("token {token:?} of {list:?}: {other:?}"),
            }
        }
        TokenMode::Walk => {
            let page_size = u32::from(rest.first().copied().unwrap_or(1) % 4) + 1;
            let (everything, none) = list_page(list, filtered, 500, None).expect("one big page");
            assert!(none.is_none());
            let mut walked = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let (items, next) = list_page(list, filtered, page_size, token.as_deref())
                    .unwrap_or_else(|error| {
                        panic!("the server refused its own token {token:?}: {error}")
                    });
                assert!(items.len() <= page_size as usize);
                walked.extend(items);
                match next {
                    Some(next) => token = Some(next),
                    None => break,
                }
                assert!(walked.len() <= everything.len(), "pages repeat items");
            }
            assert_eq!(walked, everything, "walking the pages of {list:?}");
        }
    }
});
