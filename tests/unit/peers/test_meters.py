"""The side-by-side meters against processes whose memory and traffic are known."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from fedhealth_tools.peers.meters import LinkBytes, TreeMemory, parse_ss, run_measured, tree_pids

SS_TEXT = """0      0      127.0.0.1:42604 127.0.0.1:8002 users:(("python3",pid=101,fd=3))
\t cubic wscale:7,7 rto:204 bytes_sent:1259 bytes_acked:1260 bytes_received:214440 segs_out:16
0      0      127.0.0.1:42620 127.0.0.1:9000 users:(("python3",pid=102,fd=4),("python3",pid=103,fd=4))
\t cubic bytes_sent:5 bytes_received:7
"""


def test_parse_ss_reads_ports_pids_and_counters():
    sockets = parse_ss(SS_TEXT)
    assert [(s["peer_port"], s["pids"], s["bytes_sent"], s["bytes_received"]) for s in sockets] == [
        (8002, [101], 1259, 214440),
        (9000, [102, 103], 5, 7),
    ]
    assert sockets[0]["local"] == "127.0.0.1:42604"


def _listener() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    return server, server.getsockname()[1]


CLIENT = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"x" * int(sys.argv[2]))
time.sleep(float(sys.argv[3]))
"""


def test_link_bytes_counts_what_a_child_process_sends_to_the_server_port():
    server, port = _listener()
    payload = 3_000_000
    # the client runs under a shell, so its socket belongs to a descendant of the root pid
    proc = subprocess.Popen(["sh", "-c", f"\"{sys.executable}\" -c '{CLIENT}' {port} {payload} 3"])
    try:
        with LinkBytes({"site-1": proc.pid}, {port}, interval=0.1) as meter:
            conn, _ = server.accept()
            received = 0
            while received < payload:
                received += len(conn.recv(1 << 20))
            conn.sendall(b"y" * 1000)
            time.sleep(0.5)
        result = meter.result()
    finally:
        proc.kill()
        proc.wait()
        server.close()
    assert list(result) == ["site-1"]
    assert result["site-1"]["bytes_sent"] == payload
    assert result["site-1"]["bytes_received"] == 1000
    assert result["site-1"]["sockets"] == 1


def test_link_bytes_ignores_other_ports_and_other_processes():
    server, port = _listener()
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), "1000", "2"])
    try:
        with LinkBytes({"site-1": proc.pid}, {port + 1}, interval=0.1) as other_port:
            server.accept()
            time.sleep(0.4)
        with LinkBytes({"site-1": 1}, {port}, interval=0.1) as other_tree:
            time.sleep(0.3)
    finally:
        proc.kill()
        proc.wait()
        server.close()
    assert other_port.result() == {}
    assert other_tree.result() == {}


ALLOC = "import time; b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(3)"


def test_tree_memory_sees_a_grandchild_allocation():
    proc = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{ALLOC}"'])
    try:
        time.sleep(0.2)
        with TreeMemory({"site-1": proc.pid}, interval=0.1) as meter:
            time.sleep(2.0)
        assert len(tree_pids(proc.pid)) == 2
    finally:
        proc.kill()
        proc.wait()
    result = meter.result()
    assert 200 <= result["peak_mb"]["site-1"] < 320
    assert result["peak_total_mb"] == pytest.approx(result["peak_mb"]["site-1"])


def test_tree_of_an_exited_process_is_empty():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert tree_pids(proc.pid) == set()


def test_run_measured_reports_the_tree_peak_and_kills_a_command_past_its_timeout(tmp_path):
    done = run_measured(["sh", "-c", f'"{sys.executable}" -c "{ALLOC}"'], tmp_path / "a.log", timeout=30)
    assert done["returncode"] == 0
    assert 200 <= done["peak_mem_mb"] < 320
    assert 3.0 <= done["wall_s"] < 20
    late = run_measured(["sh", "-c", "sleep 30"], tmp_path / "b.log", timeout=0.5)
    assert late["returncode"] is None
    assert late["wall_s"] < 5
