//! `sluice ctl`: the operator's commands over the control API (list, show,
//! lock, unlock, kick), each printing a table for a person or, with
//! `--json`, the API's JSON for a script. Each command is one function
//! from an [`ApiClient`] to the text to print, so tests run them against a
//! real daemon and compare what an operator would see.

mod client;
pub mod demo;
mod table;

use serde_json::{Value, json};

pub use client::{ApiClient, CtlError, segment};
pub use table::Table;

/// Page size `list` asks for (the API's largest).
const PAGE: usize = 1000;

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn yes_no(value: &Value) -> String {
    if value.as_bool() == Some(true) {
        "yes".to_owned()
    } else {
        "no".to_owned()
    }
}

fn pretty(value: &Value) -> String {
    // Serializing a `Value` cannot fail.
    let mut out = serde_json::to_string_pretty(value).unwrap_or_default();
    out.push('\n');
    out
}

fn array<'a>(value: &'a Value, field: &str, api: &ApiClient) -> Result<&'a [Value], CtlError> {
    value[field]
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| CtlError::BadAnswer {
            api: api.authority().to_owned(),
            reason: format!("no {field} array in the answer"),
        })
}

/// `sluice ctl list [--mode M]`: every meeting, all pages followed.
pub fn list(api: &ApiClient, mode: Option<&str>, as_json: bool) -> Result<String, CtlError> {
    let mut meetings: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/meetings?limit={PAGE}");
        if let Some(mode) = mode {
            path.push_str(&format!("&mode={}", segment(mode)));
        }
        if let Some(after) = &after {
            path.push_str(&format!("&after={}", segment(after)));
        }
        let page = api.get(&path)?;
        meetings.extend_from_slice(array(&page, "meetings", api)?);
        match page["next"].as_str() {
            // Cursors only move forward; a server that repeats one would
            // otherwise keep this loop going for ever.
            Some(next) if after.as_deref().is_none_or(|a| next > a) => {
                after = Some(next.to_owned());
            }
            Some(next) => {
                return Err(CtlError::BadAnswer {
                    api: api.authority().to_owned(),
                    reason: format!("the page cursor went back to {next:?}"),
                });
            }
            None => break,
        }
    }
    if as_json {
        return Ok(pretty(&json!({ "meetings": meetings })));
    }
    let mut table = Table::new(&["ID", "MODE", "LOCKED", "PARTICIPANTS", "OWNER"]);
    for m in &meetings {
        let owner = format!(
            "{}{}",
            text(&m["owner"]["account"]),
            if m["owner"]["verified"] == true {
                " (verified)"
            } else {
                ""
            }
        );
        table.row(vec![
            text(&m["id"]),
            text(&m["mode"]),
            yes_no(&m["locked"]),
            text(&m["participants"]),
            owner,
        ]);
    }
    Ok(table.render())
}

/// `sluice ctl show MEETING`: the meeting and its roster.
pub fn show_meeting(api: &ApiClient, meeting: &str, as_json: bool) -> Result<String, CtlError> {
    let m = api.get(&format!("/v1/meetings/{}", segment(meeting)))?;
    if as_json {
        return Ok(pretty(&m));
    }
    let mut out = format!(
        "meeting {}: {}, locked {}, owner {}{}, {} participant(s)\n",
        text(&m["id"]),
        text(&m["mode"]),
        yes_no(&m["locked"]),
        text(&m["owner"]["account"]),
        if m["owner"]["verified"] == true {
            " (verified)"
        } else {
            ""
        },
        text(&m["participants"]),
    );
    let mut table = Table::new(&["PARTICIPANT", "NAME", "ROLE", "SOURCE", "STREAMS"]);
    for p in array(&m, "roster", api)? {
        let streams: Vec<String> = array(p, "streams", api)?
            .iter()
            .map(|s| {
                format!(
                    "{} {}/{}",
                    text(&s["ssrc"]),
                    text(&s["kind"]),
                    text(&s["codec"])
                )
            })
            .collect();
        table.row(vec![
            text(&p["id"]),
            text(&p["name"]),
            text(&p["role"]),
            text(&p["source"]),
            if streams.is_empty() {
                "-".to_owned()
            } else {
                streams.join(", ")
            },
        ]);
    }
    out.push_str(&table.render());
    Ok(out)
}

/// `sluice ctl show MEETING PARTICIPANT`: latch, counters, streams.
pub fn show_participant(
    api: &ApiClient,
    meeting: &str,
    participant: &str,
    as_json: bool,
) -> Result<String, CtlError> {
    let p = api.get(&format!(
        "/v1/meetings/{}/participants/{}",
        segment(meeting),
        segment(participant)
    ))?;
    if as_json {
        return Ok(pretty(&p));
    }
    let latch = if p["latch"]["latched"] == true {
        text(&p["latch"]["address"])
    } else {
        "not latched (no authenticated packet yet)".to_owned()
    };
    let mut out = format!(
        "participant {} ({}) in meeting {}\n\
         role           {}\n\
         source         {}\n\
         srtp profile   {}\n\
         latch          {}\n\
         srtcp sent     {}\n\
         srtcp received highest index {}\n",
        text(&p["id"]),
        text(&p["name"]),
        text(&p["meeting"]),
        text(&p["role"]),
        text(&p["source"]),
        text(&p["srtp_profile"]),
        latch,
        text(&p["counters"]["srtcp_packets_sent"]),
        text(&p["counters"]["srtcp_highest_index_received"]),
    );
    let mut table = Table::new(&["SSRC", "KIND", "CODEC", "PT", "HIGHEST SRTP INDEX"]);
    for s in array(&p, "streams", api)? {
        table.row(vec![
            text(&s["ssrc"]),
            text(&s["kind"]),
            text(&s["codec"]),
            text(&s["payload_type"]),
            text(&s["highest_srtp_index"]),
        ]);
    }
    out.push_str(&table.render());
    Ok(out)
}

/// `sluice ctl lock|unlock MEETING`.
pub fn lock(
    api: &ApiClient,
    meeting: &str,
    locked: bool,
    as_json: bool,
) -> Result<String, CtlError> {
    let m = api.post(
        &format!("/v1/meetings/{}/lock", segment(meeting)),
        &json!({ "locked": locked }),
    )?;
    if as_json {
        return Ok(pretty(&m));
    }
    Ok(format!(
        "meeting {} is {}\n",
        text(&m["id"]),
        if m["locked"] == true {
            "locked: nobody else is admitted"
        } else {
            "unlocked"
        }
    ))
}

/// `sluice ctl kick MEETING PARTICIPANT`: removes the participant; its leg
/// stops being relayed at once (a phone caller is hung up).
pub fn kick(
    api: &ApiClient,
    meeting: &str,
    participant: &str,
    as_json: bool,
) -> Result<String, CtlError> {
    api.delete(&format!(
        "/v1/meetings/{}/participants/{}",
        segment(meeting),
        segment(participant)
    ))?;
    if as_json {
        return Ok(pretty(
            &json!({ "meeting": meeting, "participant": participant, "removed": true }),
        ));
    }
    Ok(format!(
        "removed participant {participant} from meeting {meeting}\n"
    ))
}
