//! `sluice demo [--e2ee]`: the newcomer's first meeting. Creates a meeting
//! on a running relay, admits two browser participants (`transport:
//! "webrtc"`) and prints a join link for each: the meeting page with the
//! participant's token and WHIP/WHEP URLs in the fragment, and in an E2EE
//! meeting a fresh meeting key there too. The key is made here, printed
//! once and never sent to the relay: the fragment stays in the browser.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};

use super::{ApiClient, CtlError, segment};

/// The two participants a demo admits.
const NAMES: [&str; 2] = ["Ann", "Bob"];

/// One admitted participant's join link.
#[derive(Debug, Clone)]
pub struct JoinLink {
    /// Who it is for.
    pub name: String,
    /// `http://<api>/meet#token=…&whip=…&whep=…&name=…[&key=…]`.
    pub url: String,
}

/// What `sluice demo` made.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The meeting's id.
    pub meeting: String,
    /// Whether it is end-to-end encrypted.
    pub e2ee: bool,
    /// One link per participant.
    pub links: Vec<JoinLink>,
}

fn field<'a>(value: &'a Value, path: &[&str], api: &ApiClient) -> Result<&'a str, CtlError> {
    path.iter()
        .fold(value, |v, key| &v[*key])
        .as_str()
        .ok_or_else(|| CtlError::BadAnswer {
            api: api.authority().to_owned(),
            reason: format!("no {} in the answer", path.join(".")),
        })
}

/// A fresh 32-byte meeting key, base64url as the page reads it.
fn meeting_key() -> Result<String, CtlError> {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).map_err(|_| {
        CtlError::Runtime(std::io::Error::other("the system random generator failed"))
    })?;
    Ok(URL_SAFE_NO_PAD.encode(key))
}

/// Creates the meeting and admits the participants.
pub fn create(api: &ApiClient, e2ee: bool) -> Result<Demo, CtlError> {
    let mode = if e2ee { "e2ee" } else { "standard" };
    // The demo's owner is verified, as the default policy wants for E2EE.
    let meeting = api.post(
        "/v1/meetings",
        &json!({ "mode": mode, "owner": { "account": "demo", "verified": true } }),
    )?;
    let id = field(&meeting, &["id"], api)?.to_owned();
    let key = if e2ee { Some(meeting_key()?) } else { None };
    let mut links = Vec::new();
    for name in NAMES {
        let admitted = api.post(
            &format!("/v1/meetings/{}/participants", segment(&id)),
            &json!({ "name": name, "transport": "webrtc" }),
        )?;
        let mut fragment = format!(
            "token={}&whip={}&whep={}&name={}",
            segment(field(&admitted, &["webrtc", "token"], api)?),
            segment(field(&admitted, &["webrtc", "whip"], api)?),
            segment(field(&admitted, &["webrtc", "whep"], api)?),
            segment(name),
        );
        if let Some(key) = &key {
            fragment.push_str(&format!("&key={key}"));
        }
        links.push(JoinLink {
            name: name.to_owned(),
            url: format!("http://{}/meet#{fragment}", api.authority()),
        });
    }
    Ok(Demo {
        meeting: id,
        e2ee,
        links,
    })
}

/// What `sluice demo` prints: the links and what to do with them.
pub fn render(demo: &Demo, api: &ApiClient) -> String {
    let kind = if demo.e2ee {
        "an end-to-end encrypted"
    } else {
        "a standard"
    };
    let mut out = format!(
        "Created {kind} meeting {:?} on http://{}.\n\
         Open each link in a browser tab of its own (Chrome, Edge or Safari for E2EE),\n\
         allow the camera and microphone, and you see and hear yourself through sluice:\n\n",
        demo.meeting,
        api.authority()
    );
    for link in &demo.links {
        out.push_str(&format!("  {}: {}\n\n", link.name, link.url));
    }
    if demo.e2ee {
        out.push_str(
            "Both links carry the same meeting key after `key=`. The part after # never\n\
             leaves the browser: sluice forwards the SFrame ciphertext and cannot read it.\n\
             Both tabs show the same safety code; a tab with another key shows another code\n\
             and decodes nothing.\n\n",
        );
    }
    out.push_str(&format!(
        "Run `sluice demo` again for another meeting. End this one with:\n  \
         curl -X DELETE http://{}/v1/meetings/{}\n",
        api.authority(),
        segment(&demo.meeting)
    ));
    out
}
