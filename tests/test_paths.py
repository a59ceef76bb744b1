"""Where files go and how they are written: atomic JSON, named errors for missing, damaged or misplaced files."""


import pytest

from sapo_core.paths import UnreadableFileError, figures_dir, read_json, write_json


def test_write_json_then_read_json(tmp_path):
    path = write_json(tmp_path / "a.json", {"x": 1, "path": tmp_path})
    assert read_json(path, "a record") == {"x": 1, "path": str(tmp_path)}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content, words", [(None, "does not exist"), ("{broken", "cannot be read"),
                                            (b"\xff\xfe", "cannot be read"), ("[1, 2]", "JSON object")])
def test_read_json_names_the_file_and_what_is_wrong(tmp_path, content, words):
    path = tmp_path / "status.json"
    if content is not None:
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with pytest.raises(UnreadableFileError, match=words) as info:
        read_json(path, "the run's status")
    assert "status.json (the run's status)" in str(info.value)


def test_a_figure_directory_that_is_a_file_is_named(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="figure directory .*f is a file"):
        figures_dir(tmp_path / "f")
    assert figures_dir(tmp_path / "new").is_dir()
