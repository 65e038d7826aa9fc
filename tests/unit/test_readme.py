from pathlib import Path

from fanline.common.config import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_table_is_the_generated_one() -> None:
    text = README.read_text()
    start = text.index("<!-- config-table:start -->\n") + len("<!-- config-table:start -->\n")
    end = text.index("\n<!-- config-table:end -->")
    assert text[start:end] == markdown_table(), "regenerate with python -m fanline.common.config"


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in README.read_text()
