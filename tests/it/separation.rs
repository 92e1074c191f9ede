//! The three-layer separation (三層分離): the agent runs in its own network namespace
//! whose only link leads to the hub's participant port; the whole flow works; the agent
//! listens on nothing, so nothing on the hub side can connect into its segment.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use renkei_e2e::netns::Netns;
use renkei_e2e::proc::Background;
use renkei_e2e::{APP, Backend, Basic};

fn connects(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_layer_separation() {
    let ns = match Netns::create().unwrap() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("NOTE: SKIPPING the three-layer separation test: {why}");
            return;
        }
    };
    let (host, inside) = (ns.host_addr, ns.ns_addr);
    let b = Basic::run(Backend::Sqlite, &[APP], Some(ns))
        .await
        .unwrap()
        .unwrap();
    let ns = b.scene.agent_netns.as_ref().unwrap();

    // The whole flow worked with the agent inside: what the app decrypted is the preview.
    assert!(!b.expected.is_empty());
    for (id, want) in &b.expected {
        assert_eq!(&b.pulled[id].payload, want, "record {id}");
    }
    assert_eq!(b.pulled.len(), b.expected.len());
    let pids = Command::new("ip")
        .args(["netns", "pids", &ns.name])
        .output()
        .unwrap();
    let pids = String::from_utf8_lossy(&pids.stdout).into_owned();
    assert!(
        pids.split_whitespace()
            .any(|p| p == b.agent.pid().to_string()),
        "the agent is not in the namespace: {pids}"
    );

    // The namespace's only route is its link to the hub: no default route.
    let routes = ns.routes().unwrap();
    assert!(
        !routes.contains("default"),
        "the agent's namespace has a default route:\n{routes}"
    );
    assert_eq!(
        routes.lines().count(),
        1,
        "more than the link route:\n{routes}"
    );
    assert!(
        routes.contains(&format!("{}/30", ns_net(inside))),
        "{routes}"
    );

    // From inside: the hub's participant port answers; its admin and portal listeners
    // (loopback on the hub side) and anything on the namespace's own loopback do not.
    let reach = |addr: SocketAddr| {
        let script = format!(
            "timeout 5 bash -c 'exec 3<>/dev/tcp/{}/{}' 2>/dev/null",
            addr.ip(),
            addr.port()
        );
        ns.sh(&script).unwrap().0
    };
    let participant = b.hub.addrs.participant;
    assert_eq!(participant.ip(), std::net::IpAddr::V4(host));
    assert!(
        reach(participant),
        "the agent cannot reach the hub's participant port"
    );
    for port in [b.hub.addrs.admin.port(), b.hub.addrs.portal.port()] {
        assert!(
            !reach(SocketAddr::from((host, port))),
            "port {port} on the hub side is reachable from the agent"
        );
        assert!(
            !reach(SocketAddr::from(([127, 0, 0, 1], port))),
            "port {port} on loopback is reachable from the agent"
        );
    }

    // The agent listens on nothing: no listening socket in its namespace at all ...
    let listeners = ns.listeners().unwrap();
    assert!(
        listeners.is_empty(),
        "listening sockets in the agent's namespace: {listeners:?}"
    );
    // ... so no connection from the hub side into the namespace succeeds.
    let probe_ports = [
        participant.port(),
        b.hub.addrs.admin.port(),
        22,
        80,
        443,
        8443,
        9090,
    ];
    for port in probe_ports {
        assert!(
            !connects(SocketAddr::from((inside, port))),
            "connected into the agent's namespace on port {port}"
        );
    }

    // Control: a listener started inside the namespace is seen by `ss` and reachable from
    // the hub side, so the two checks above can fail.
    let port = participant.port();
    let listen = format!(
        "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('0.0.0.0',{port}))\ns.listen()\ntime.sleep(30)\n"
    );
    let mut control = Command::new("ip");
    control
        .args(["netns", "exec", &ns.name, "python3", "-c", &listen])
        .stdout(Stdio::null());
    let control = Background::spawn(
        "control listener",
        &mut control,
        &b.scene.root().join("control.log"),
    )
    .unwrap();
    let seen =
        renkei_e2e::proc::wait_until("the control listener", Duration::from_secs(10), || async {
            Ok((!ns.listeners()?.is_empty()).then_some(()))
        })
        .await;
    seen.unwrap();
    assert!(
        connects(SocketAddr::from((inside, port))),
        "the control listener is not reachable"
    );
    control.stop();

    // The audit chain is intact after the whole flow.
    let audit = b.scene.audit_verify().await.unwrap();
    assert!(audit.status.success(), "{audit}");
}

/// The network address of the /30 holding `a`.
fn ns_net(a: std::net::Ipv4Addr) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(a) & !3)
}
