"""Settings: every one is documented in the README's configuration table."""

from pathlib import Path

from db.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    table = [line for line in README.read_text().splitlines() if line.startswith("| `RUNWATCH_")]
    documented = {line.split("`")[1] for line in table}
    expected = {f"RUNWATCH_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from the README"
    assert documented - expected == set(), "README documents settings that do not exist"


def test_settings_read_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("RUNWATCH_HEARTBEAT_S", "2.5")
    assert Settings().heartbeat_s == 2.5
