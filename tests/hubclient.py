"""A student at a lab hub, over its REST API: log in with a password, start a server, run code in a kernel.

This is the path a browser takes, without the browser: the hub's login form
(PAM checks the password), a token the student makes for themselves, their
server started through the hub, a kernel in it and code executed over the
kernel's websocket — every request through the hub's proxy.  The hub tests
drive several students at once with it (asyncio).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

import students
from labkit import runtime
from labkit.errors import LabkitError
from labkit.hub import HubPlan, accounts, server


class HubClientError(LabkitError):
    """The hub refused a request, or a server or kernel did not come up."""


@dataclass(frozen=True)
class Execution:
    """What a cell printed (stdout + stderr) and whether it raised (``error`` is ``"Name: value"``)."""

    output: str
    error: str | None = None


class Student:
    """One student's session with the hub at ``url`` (``http://host:port``)."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url.rstrip("/"), name
        self.http = AsyncHTTPClient(force_instance=True)
        self.token: str | None = None

    async def request(self, path: str, method: str = "GET", body: str | None = None, **kw) -> Any:
        """``method path`` with the student's token: the decoded JSON, or the raw reply for anything else."""
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        headers.update(kw.pop("headers", {}))
        if body is not None and "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"
        try:
            reply = await self.http.fetch(HTTPRequest(self.url + path, method, headers=headers, body=body,
                                                      request_timeout=300, **kw))
        except HTTPClientError as exc:
            text = exc.response.body.decode(errors="replace")[:300] if exc.response else ""
            raise HubClientError(f"{method} {path} as {self.name}: HTTP {exc.code} {text}",
                                 "read the hub's log (jupyterhub.log in its state folder)") from exc
        return json.loads(reply.body) if reply.body and reply.headers.get("Content-Type", "").startswith(
            "application/json") else reply

    async def log_in(self, password: str) -> None:
        """The login form, as a browser submits it; then a token the student makes for themselves."""
        page = await self.http.fetch(self.url + "/hub/login")
        cookies = SimpleCookie()
        for header in page.headers.get_list("Set-Cookie"):
            cookies.load(header)
        xsrf = cookies["_xsrf"].value
        form = urllib.parse.urlencode({"username": self.name, "password": password, "_xsrf": xsrf})
        jar = "; ".join(f"{k}={m.value}" for k, m in cookies.items())
        try:
            reply = await self.http.fetch(HTTPRequest(self.url + "/hub/login", "POST", body=form,
                                                      headers={"Cookie": jar}, follow_redirects=False))
        except HTTPClientError as exc:
            if exc.code != 302 or exc.response is None:
                raise HubClientError(f"{self.name} could not log in (HTTP {exc.code})",
                                     "check the name and password (PAM: a local account)") from exc
            reply = exc.response
        for header in reply.headers.get_list("Set-Cookie"):
            cookies.load(header)
        if not any(name.startswith("jupyterhub-hub-login") for name in cookies):
            raise HubClientError(f"the hub did not log {self.name} in", "check the name and password")
        xsrf = cookies["_xsrf"].value  # a new one, tied to the login session
        jar = "; ".join(f"{k}={m.value}" for k, m in cookies.items())
        made = await self.request(f"/hub/api/users/{self.name}/tokens", "POST",
                                 json.dumps({"note": "labkit hub client", "expires_in": 3600}),
                                 headers={"Cookie": jar, "X-XSRFToken": xsrf})
        self.token = made["token"]

    async def start_server(self, timeout: float = 300) -> None:
        """Ask the hub for this student's server and wait until the hub says it is ready."""
        await self.request(f"/hub/api/users/{self.name}/server", "POST", "{}")
        deadline = time.monotonic() + timeout
        while True:
            model = await self.request(f"/hub/api/users/{self.name}")
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return
            if time.monotonic() > deadline:
                raise HubClientError(f"{self.name}'s server was not ready within {timeout:.0f} s",
                                     "read the hub's log (jupyterhub.log in its state folder)")
            await asyncio.sleep(0.5)

    async def stop_server(self) -> None:
        await self.request(f"/hub/api/users/{self.name}/server", "DELETE")

    async def execute(self, code: str, timeout: float = 600) -> Execution:
        """Run ``code`` in a new kernel of the student's server (through the proxy) and shut the kernel down."""
        base = f"/user/{self.name}/api/kernels"
        kernel = await self.request(base, "POST", json.dumps({"name": "python3", "path": ""}))  # cwd: the lab folder
        ws_url = self.url.replace("http", "ws", 1) + f"{base}/{kernel['id']}/channels"
        conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {self.token}"}))
        try:
            return await asyncio.wait_for(self._run(conn, code), timeout)
        finally:
            conn.close()
            await self.request(f"{base}/{kernel['id']}", "DELETE")

    async def _run(self, conn, code: str) -> Execution:
        msg_id = uuid.uuid4().hex
        await conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": self.name,
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        output, error = [], None
        while True:
            raw = await conn.read_message()
            if raw is None:
                raise HubClientError(f"{self.name}'s kernel connection closed mid-run", "read the hub's log")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                return Execution("".join(output), error)

    def close(self) -> None:
        self.http.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def remove_account(name: str) -> None:
    """The account, its home, its run dir and anything still running as it (after a failure) are removed."""
    account = accounts.lookup(name)
    if account is not None:
        students.stop_everything(account.uid)
        subprocess.run(["userdel", "--remove", name], capture_output=True)
    shutil.rmtree(runtime.run_dir_of(name), ignore_errors=True)


def start_hub(plan: HubPlan, passwords: Path, *options: str) -> subprocess.Popen:
    """``labkit hub start`` as the instructor runs it (plus ``options``), once it answers on ``plan.url``."""
    proc = subprocess.Popen(
        [str(plan.venv / "bin/labkit"), "hub", "start", "--students", ",".join(plan.students), "--passwords",
         str(passwords), "--ip", plan.ip, "--port", str(plan.port), "--state", str(plan.state_dir),
         "--memory-mib", str(plan.limits.memory_mib), "--cpus", str(plan.limits.cpus),
         "--cache", str(plan.shared_cache), *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not server.answers(plan):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=60)[0]
        time.sleep(0.2)
    return proc


def stop_class(hub: subprocess.Popen | None, names: tuple[str, ...], timeout: float = 180) -> None:
    """However a hub test ends: the hub stopped (SIGTERM, as Ctrl-C), the students' accounts removed."""
    if hub is not None and hub.poll() is None:  # a failed assertion: the hub still stops cleanly
        hub.send_signal(signal.SIGTERM)
        hub.communicate(timeout=timeout)
    for name in names:
        remove_account(name)
