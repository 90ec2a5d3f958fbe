"""`policyc exec`: run one command, and all it starts, under a policy as its subject.

The policy is built, loaded under a private name, the child is marked PENDING through its
pidfd before it execs (so the command's own exec starts the subject and everything after is
decided), events are printed as they come, and the policy is unloaded when the command ends.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
import tempfile
from pathlib import Path

import runtime

from . import deploy
from .audit.event import decode, describe, format_text

SUBJECT_PENDING = 2


def run_command(manifest_path: Path, argv: list[str], err, json_events: bool = False) -> int:
    manifest = deploy.read_manifest(manifest_path)
    name = f"{manifest['policy']}-exec-{os.getpid()}"
    deploy.check_kernel()
    loaded = deploy.load_manifest(manifest_path, name=name)
    reader = None
    try:
        def on_event(data: bytes) -> None:
            try:
                rec = describe(decode(data), manifest)
            except ValueError as e:
                err.write(f"policyc: unreadable event: {e}\n")
                return
            if json_events:
                import json
                err.write(json.dumps(rec, sort_keys=True) + "\n")
            else:
                err.write("policyc: " + format_text(rec) + "\n")
            err.flush()

        reader = runtime.RingBufferReader([loaded.maps["events"]], on_event)
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: wait until marked, then become the command
            os.close(go_w)
            try:
                os.read(go_r, 1)
                os.execvp(argv[0], argv)
            except OSError as e:
                os.write(2, f"policyc exec: {argv[0]}: {e.strerror}\n".encode())
                os._exit(127)
        os.close(go_r)
        try:
            runtime.mark_task(pid, loaded.maps["subjects"], struct.pack("<I", SUBJECT_PENDING))
        except runtime.BpfError as e:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise deploy.DeployError(f"could not mark the command as the policy's subject: {e.message}")
        os.write(go_w, b"g")
        os.close(go_w)
        status = None
        while status is None:
            reader.poll(100)
            wpid, wstatus = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status = wstatus
        reader.consume()
        return os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status) else 128 + os.WTERMSIG(status)
    finally:
        if reader is not None:
            reader.close()
        deploy.unload(name)
