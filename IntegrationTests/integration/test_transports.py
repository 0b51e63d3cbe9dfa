"""The three ways the official clients connect: polling + upgrade, websocket only, polling only."""

import time

import pytest

from chatmesh_testkit import WAIT, join_msg, say_msg


def _join_say_receive(clients, transports, room):
    alice = clients(room, transports=transports)
    alice.join("alice")
    alice.say("hello over " + (",".join(transports) if transports else "default"))
    text = "hello over " + (",".join(transports) if transports else "default")
    evs = alice.wait_count(2)
    assert evs == [("message", join_msg("alice")), ("message", say_msg("alice", text))]
    return alice


def test_default_transports_poll_then_upgrade_to_websocket(clients):
    alice = _join_say_receive(clients, None, "t-default")
    deadline = time.monotonic() + WAIT
    while alice.transport() != "websocket" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert alice.transport() == "websocket"
    # and events still flow after the upgrade
    alice.say("after upgrade")
    evs = alice.wait_count(3)
    assert evs[2] == ("message", say_msg("alice", "after upgrade"))


def test_websocket_only_transport(clients):
    alice = _join_say_receive(clients, ["websocket"], "t-ws")
    assert alice.transport() == "websocket"


def test_polling_only_transport(clients):
    alice = _join_say_receive(clients, ["polling"], "t-poll")
    assert alice.transport() == "polling"


@pytest.mark.parametrize("a_tr,b_tr", [(["polling"], ["websocket"]), (["websocket"], ["polling"])])
def test_polling_and_websocket_clients_share_a_room(clients, a_tr, b_tr):
    a = clients("t-mixed", transports=a_tr)
    b = clients("t-mixed", transports=b_tr)
    a.join("a")
    b.join("b")
    b.say("from b")
    a.wait_for(lambda evs: ("message", say_msg("b", "from b")) in evs)
    a.say("from a")
    assert a.wait_count(4) == [("message", join_msg("a")), ("message", join_msg("b")),
                               ("message", say_msg("b", "from b")),
                               ("message", say_msg("a", "from a"))]
    assert b.wait_count(3) == [("message", join_msg("b")), ("message", say_msg("b", "from b")),
                               ("message", say_msg("a", "from a"))]
