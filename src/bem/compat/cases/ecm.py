"""The old ECM clients on `ws://HOST:8765` (no path): one case per conversation.

Each conversation is what the old file does on one connection, message for message (the
bodies are copied from the file; `time.time()` and `datetime.now()` are replaced by one
recorded instant), and each `Receive` takes the very next message, as the client's
`recv()` / `onmessage` does, and reads of it exactly what the client reads. The welcome
comes first on every connection, so a client that sends before it reads gets the welcome
as its first answer (see bem/services/ecm_ws/legacy.py: it is a receipt too).

Not replayed: what these files send to `ws://HOST:8766` (the old "pulse system", not part
of this design: docs/migration.md says what to use instead) and to the test API on 8002.
"""

from __future__ import annotations

import json

from bem.compat.catalogue import Case, Read, Receive, Send, WebSocket

NOW = 1750430140.0  # time.time() when the old clients ran (2025-06-20 14:35:40 UTC)
NOW_PY = "2025-06-20T14:35:40.000000"  # datetime.now().isoformat()
NOW_JS = "2025-06-20T14:35:40.000Z"  # new Date().toISOString()

RECEIVED = Read("status", equals="received")
ANY = Receive()  # the client awaits a message and reads nothing of it


def _ws(*steps: Send | Receive) -> WebSocket:
    return WebSocket("ecm_ws", "/", steps)


def _agent_actions() -> list[Send | Receive]:
    steps: list[Send | Receive] = []
    for agent_type, action in (("investor", "Bid"), ("validator", "Review"),
                               ("contributor", "Join"), ("analyst", "Analyze")):
        steps += [Send({"type": "agent_action", "agent_type": agent_type, "action": action}),
                  Receive(reads=(RECEIVED,))]
    return steps


def _pulse_buttons() -> list[Send | Receive]:
    steps: list[Send | Receive] = [Receive(reads=(Read("type", str),))]  # the welcome
    for pulse_id, kind in enumerate(("bid_pulse", "occupancy_pulse", "compliancy_pulse",
                                     "fit_pulse", "investment_pulse", "decay_pulse"), 1):
        steps += [Send({"type": kind, "timestamp": NOW_JS, "payload": {
                      "source": "semantic_pulse_interface", "pulse_id": pulse_id,
                      "visual_trigger": True}}),
                  Receive(reads=(Read("type", str),))]  # logPulseActivity(message.type)
    return steps


CASES: list[Case] = [
    Case("debug_websocket.py", "test_ecm_websocket: a test message", _ws(
        Send({"type": "test", "payload": {"action": "ping"}}), ANY)),

    Case("tests/test_agent_console.py", "test_ecm_connection: system_test", _ws(
        Send({"type": "system_test", "timestamp": NOW,
              "payload": {"test": "agent_console_connection"}}),
        Receive(reads=(Read("status", str),)))),
    Case("tests/test_agent_console.py", "simulate_agent_interactions: node_select, "
         "camera_update", _ws(
             Send({"type": "node_select", "timestamp": NOW,
                   "payload": {"node_id": "building_A", "view": "cytoscape"}}), ANY,
             Send({"type": "camera_update", "timestamp": NOW,
                   "payload": {"view": "unreal", "position": [100, 200, 50]}}), ANY)),

    Case("tests/test_phase1_implementation.py", "test_websocket_communication: welcome, "
         "test_message, invalid JSON", _ws(
             Receive(reads=(Read("type", equals="connection_established"),)),
             Send({"type": "test_message", "payload": {"action": "ping", "data": "test"},
                   "id": "test_001"}),
             Receive(reads=(RECEIVED,)),
             Send("invalid json"),
             Receive(reads=(Read("error", str),)))),

    Case("tests/test_phase3_production.py", "test_websocket_latency: ping", _ws(
        Send({"type": "ping", "timestamp": NOW}), ANY)),
    Case("tests/test_phase3_production.py", "test_websocket_concurrency: one of the 20 "
         "concurrent connections", _ws(
             Send('{"type": "test", "data": "concurrent"}'), Receive(reads=(RECEIVED,)))),
    # The client checks that the answer's text contains "received".
    Case("tests/test_phase3_production.py", "test_service_coordination: coordination_test",
         _ws(Send('{"type": "coordination_test"}'), Receive(reads=(RECEIVED,)))),
    Case("tests/test_phase3_production.py", "test_websocket_security: a 100 kB message", _ws(
        Send(json.dumps({"data": "A" * 100000})), ANY)),
    Case("tests/test_phase3_production.py", "test_service_discovery: connect", _ws()),

    Case("tests/test_recent_commits.py", "test_aa_behavioral_classification: four "
         "agent_action messages", _ws(*_agent_actions())),
    Case("tests/test_recent_commits.py", "test_websocket_connectivity: connectivity_test",
         _ws(Send({"type": "connectivity_test", "timestamp": NOW}), ANY)),

    # main()'s example: user123 clicks node_42 as an explorer -> a bid_pulse to node_42 and
    # its (mock) neighbours node_0..node_2, intensity 0.5; the answer is returned as a dict.
    Case("neon/interaction_flow_coordinator.py", "_send_to_unreal: pulse_effect", _ws(
        Send({"type": "pulse_effect", "pulse_type": "bid_pulse",
              "targets": ["node_42", "node_0", "node_1", "node_2"], "intensity": 0.5,
              "timestamp": NOW_PY}),
        Receive(reads=(Read("", dict),)))),

    Case("frontend/semantic_pulse_interface.html", "a page session: the six pulse buttons",
         _ws(*_pulse_buttons())),
]
