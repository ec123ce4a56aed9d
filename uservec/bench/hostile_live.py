"""The hostile catalogue (:mod:`uservec.bench.hostile`) sent to a live server over a real socket:
one row per case, 0 5xx; stalled requests are sent in part and then nothing."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path
from typing import Any

from uservec.bench.common import bundle_items
from uservec.bench.hostile import SERVER_SETTINGS, HostileCase, check_answer
from uservec.bench.hostile_users import all_cases, concurrent_appends
from uservec.bench.server import HOST, ServerProcess, error_code


def _stalled(port: int, case: HostileCase, timeout_s: float) -> tuple[int, bytes]:
    """Send part of a request (its head, or its head and part of its body), then nothing: the
    server's deadline must answer (408) and close."""
    with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
        if case.stall == "head":
            sock.sendall(case.body)
        else:
            request_head = (f"{case.method} {case.path} HTTP/1.1\r\nHost: {HOST}\r\n"
                            f"Content-Type: {case.content_type}\r\nContent-Length: 1000\r\n\r\n")
            sock.sendall(request_head.encode() + case.body)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            return 0, b"no answer before the client's timeout"
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head:
        return 0, b"connection closed without an answer"
    return int(head.split(b" ", 2)[1]), body


def send_case(port: int, case: HostileCase, timeout_s: float = 30.0) -> tuple[int, bytes]:
    """One hostile request over a real socket (chunked or stalled when the case says so)."""
    if case.stall is not None:
        return _stalled(port, case, timeout_s)
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": case.content_type} if case.content_type else {}
        headers.update(case.headers)
        if case.chunked:
            chunks = (case.body[i : i + (1 << 16)] for i in range(0, len(case.body), 1 << 16))
            conn.request(case.method, case.path, body=chunks, headers=headers,
                         encode_chunked=True)
        else:
            conn.request(case.method, case.path, body=case.body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (ConnectionError, http.client.HTTPException) as exc:
        # the server may answer 413 and close before reading the whole body
        return 0, f"{type(exc).__name__}: {exc}".encode()
    finally:
        conn.close()


def hostile(bundle: Path, workdir: Path) -> dict[str, Any]:
    """Every case of :func:`all_cases` over a real socket: one row each, 0 5xx allowed."""
    items = bundle_items(bundle)
    cases = all_cases(item=items[0][1] if items and items[0][0] == "books" else "b0")
    failures = []
    rows: list[dict[str, Any]] = []
    with ServerProcess(bundle, workdir / "server-hostile.log", **SERVER_SETTINGS) as server:
        for case in cases:
            start = time.perf_counter()
            status, body = send_case(server.port, case)
            seconds = time.perf_counter() - start
            problem = None if status == 0 and 413 in case.allowed else check_answer(
                case, status, body)
            if problem:
                failures.append(problem[:300])
            rows.append({"case": case.name, "method": case.method, "path": case.path,
                         "expected": sorted(case.allowed), "status": status,
                         "code": error_code(body), "seconds": round(seconds, 3),
                         "ok": problem is None})
        race = concurrent_appends(
            lambda path, body: server.request("POST", path, raw=body)[0],
            lambda path: _json(server.request("GET", path)))
        alive = server.request("GET", "/health/ready")[0] == 200
    fives = sum(1 for row in rows if row["status"] >= 500)
    return {"inputs_tried": len(cases), "failures": failures, "server_5xx": fives,
            "rows": rows, "server_alive_after": alive, "concurrent_appends": race,
            "passed": not failures and alive and fives == 0 and race["passed"]}


def _json(answer: tuple[int, bytes]) -> tuple[int, dict[str, Any]]:
    status, body = answer
    return status, json.loads(body) if status == 200 else {}
