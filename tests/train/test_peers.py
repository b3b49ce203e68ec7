"""The peer watchdog's protocol on a socket pair (no second process): end of stream without bye is a lost
peer, bye is not, err is lost unless this process leaves the block too within 2 GRACE; a failing block
gives its watchers GRACE to report a lost peer before it re-raises."""

import socket
import threading

import pytest

from gm_jax.train import peers


@pytest.fixture
def lost(monkeypatch):
    calls = []
    monkeypatch.setattr(peers, "_lost", lambda process, count, why: calls.append((process, count, why)))
    monkeypatch.setattr(peers, "GRACE", 0.05)
    return calls


def _watch_after(send, lost, stop_after=None):
    mine, theirs = socket.socketpair()
    stopping = threading.Event()
    watcher = threading.Thread(target=peers._watch, args=(mine, 1, 2, stopping))
    watcher.start()
    if send:
        theirs.sendall(send)
    if stop_after is not None:
        threading.Timer(stop_after, stopping.set).start()
    theirs.close()
    watcher.join(5)
    assert not watcher.is_alive()
    mine.close()
    return lost


def test_end_of_stream_without_bye_is_a_lost_peer(lost):
    assert _watch_after(b"", lost) == [(1, 2, "connection closed")]
    assert _watch_after(b"by", lost)[-1] == (1, 2, "connection closed")  # a cut-off bye is not a bye


def test_bye_is_not_a_lost_peer(lost):
    assert _watch_after(peers.BYE, lost) == []


def test_err_is_lost_unless_this_process_stops_too(lost):
    assert _watch_after(peers.ERR, lost, stop_after=0.02) == []  # the same error here: reported by this process
    assert _watch_after(peers.ERR, lost) == [(1, 2, "it stopped with an error: see that process's output")]


def test_failing_block_says_err_and_waits_for_its_watchers(lost):
    mine, theirs = socket.socketpair()
    stopping = threading.Event()
    watcher = threading.Thread(target=peers._watch, args=(mine, 1, 2, stopping))
    watcher.start()
    theirs.close()  # the peer dies while this process fails: its watcher reports it within GRACE
    peers._leave({1: mine}, [watcher], stopping, finished=False)
    assert lost == [(1, 2, "connection closed")] and stopping.is_set()
    a, b = socket.socketpair()
    peers._leave({1: a}, [], threading.Event(), finished=True)
    assert b.recv(16) == peers.BYE
    c, d = socket.socketpair()
    peers._leave({1: c}, [], threading.Event(), finished=False)
    assert d.recv(16) == peers.ERR
