//! Owns: etcd's own API, reached along a gate check's mTLS edge (etcd's JSON gateway on its
//! client port): which member leads, and handing leadership to another member, so a restart
//! of the leader does not drop the writes in flight.
//! Must not: decide when to hand off (the runner does), or retry writes itself.

use std::time::{Duration, Instant};

use super::gate;
use crate::plan::gates::Check;
use crate::reach::transport::Transport;

/// What `/v3/maintenance/status` says: this member's id and the leader's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub member: String,
    pub leader: String,
}

fn id(v: &serde_json::Value) -> Option<String> {
    // The gateway writes uint64 ids as strings; accept numbers too.
    v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string()))
}

pub fn parse_status(body: &[u8]) -> Result<MemberStatus, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("etcd status: not JSON: {e}"))?;
    let member = id(&v["header"]["member_id"]).ok_or("etcd status: no header.member_id")?;
    let leader = id(&v["leader"]).ok_or("etcd status: no leader")?;
    Ok(MemberStatus { member, leader })
}

/// `/v3/cluster/member/list`: (id, name) of every member.
pub fn parse_members(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("etcd member list: not JSON: {e}"))?;
    let members = v["members"].as_array().ok_or("etcd member list: no members")?;
    Ok(members.iter().filter_map(|m| Some((id(&m["ID"])?, m["name"].as_str().unwrap_or("").to_string()))).collect())
}

async fn post(t: &dyn Transport, c: &Check, path: &str, body: &str) -> Result<Vec<u8>, String> {
    let (status, answer) = gate::call(t, c, path, Some(body), Duration::from_secs(5)).await?;
    if status != 200 {
        return Err(format!("POST {path} answered HTTP {status}: {}", String::from_utf8_lossy(&answer).trim()));
    }
    Ok(answer)
}

/// When the member `c` reaches leads, moves its leadership to another member and waits (up
/// to `patience`) until it no longer leads. Returns the new leader's name, or None when the
/// member was not leading.
pub async fn hand_off(t: &dyn Transport, c: &Check, patience: Duration) -> Result<Option<String>, String> {
    let s = parse_status(&post(t, c, "/v3/maintenance/status", "{}").await?)?;
    if s.member != s.leader {
        return Ok(None);
    }
    let members = parse_members(&post(t, c, "/v3/cluster/member/list", "{}").await?)?;
    let Some((target, name)) = members.into_iter().find(|(i, _)| *i != s.member) else {
        return Ok(None);
    };
    post(t, c, "/v3/maintenance/transfer-leadership", &format!("{{\"targetID\":\"{target}\"}}")).await?;
    let deadline = Instant::now() + patience;
    loop {
        let now = parse_status(&post(t, c, "/v3/maintenance/status", "{}").await?)?;
        if now.leader != now.member {
            return Ok(Some(name));
        }
        if Instant::now() >= deadline {
            return Err(format!("still the leader {patience:?} after handing off to {name}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As etcd 3.4.23's gateway answered on the test fleet.
    const STATUS: &[u8] = br#"{"header":{"cluster_id":"13464125262742517713","member_id":"4471860100649191219","revision":"1","raft_term":"3"},"version":"3.4.23","dbSize":"20480","leader":"2018448226180593994","raftIndex":"12","raftTerm":"3"}"#;
    const MEMBERS: &[u8] = br#"{"header":{"member_id":"14578664945087758915"},"members":[{"ID":"2018448226180593994","name":"cp3","peerURLs":["https://172.29.0.12:2380"]},{"ID":"4471860100649191219","name":"cp2"}]}"#;

    #[test]
    fn status_and_members_parse_as_the_gateway_writes_them() {
        assert_eq!(parse_status(STATUS).unwrap(), MemberStatus { member: "4471860100649191219".into(), leader: "2018448226180593994".into() });
        assert_eq!(parse_members(MEMBERS).unwrap(), vec![("2018448226180593994".into(), "cp3".into()), ("4471860100649191219".into(), "cp2".into())]);
        assert!(parse_status(b"{}").is_err() && parse_status(b"not json").is_err());
        assert_eq!(parse_status(br#"{"header":{"member_id":5},"leader":5}"#).unwrap().leader, "5");
    }
}
