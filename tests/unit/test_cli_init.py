"""`meshops init [DIR]`: a commented starter that validates; never overwrites."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml
from factories import age_recipient, meshops, ssh_recipient


def test_init_creates_a_commented_mesh_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "my-mesh"
    result = meshops("init", target)
    assert result.returncode == 0, result.stderr
    assert f"created {target / 'mesh.yaml'}" in result.stdout
    text = (target / "mesh.yaml").read_text()
    assert text.count("#") > 10  # commented for people
    assert "name: my-mesh" in text
    assert stat.S_IMODE((target / "mesh.yaml").stat().st_mode) == 0o644
    check = meshops("-C", target, "validate")
    assert check.returncode == 0, check.stderr
    assert "valid: 0 nodes" in check.stdout


def test_init_makes_the_directory_a_git_repository_on_branch_main(tmp_path: Path) -> None:
    import subprocess

    # whatever the user's git would name the first branch
    env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "init.defaultBranch",
           "GIT_CONFIG_VALUE_0": "trunk"}  # fmt: skip
    result = meshops("init", tmp_path / "repo", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "repo" / ".git").is_dir()
    branch = subprocess.run(["git", "-C", str(tmp_path / "repo"), "symbolic-ref", "--short",
                             "HEAD"], capture_output=True, text=True, check=True)  # fmt: skip
    assert branch.stdout.strip() == "main"


def test_init_refuses_to_overwrite_an_existing_mesh(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text("version: 1  # mine\n")
    result = meshops("init", tmp_path)
    assert result.returncode == 1
    assert "already exists; not overwriting it" in result.stderr
    assert str(tmp_path / "mesh.yaml") in result.stderr
    assert (tmp_path / "mesh.yaml").read_text() == "version: 1  # mine\n"


def test_init_without_dir_uses_the_repo_option(tmp_path: Path) -> None:
    result = meshops("-C", tmp_path / "there", "init")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "there" / "mesh.yaml").is_file()


def test_init_defaults_the_name_from_the_directory_as_a_valid_name(tmp_path: Path) -> None:
    target = tmp_path / "My_Team Mesh"
    assert meshops("init", target).returncode == 0
    data = yaml.safe_load((target / "mesh.yaml").read_text())
    assert data["mesh"]["name"] == "my-team-mesh"
    assert data["mesh"]["trust_domain"] == "my-team-mesh.internal"


def test_init_takes_a_name_and_real_recipients(tmp_path: Path) -> None:
    age, ssh = age_recipient(1), ssh_recipient(1, comment=True)
    result = meshops("init", tmp_path, "--name", "prod", "--recipient", age, "--recipient", ssh)
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load((tmp_path / "mesh.yaml").read_text())
    assert data["mesh"]["name"] == "prod"
    assert data["ca"]["recipients"] == [age, ssh_recipient(1)]  # comment dropped
    assert meshops("-C", tmp_path, "validate").returncode == 0


def test_init_refuses_a_bad_recipient_and_writes_nothing(tmp_path: Path) -> None:
    result = meshops("init", tmp_path / "x", "--recipient", "age1notakey")
    assert result.returncode == 1
    assert "--recipient: 'age1notakey' is not a valid age X25519 recipient" in result.stderr
    assert not (tmp_path / "x" / "mesh.yaml").exists()


def test_init_refuses_a_name_that_is_not_a_valid_mesh_name(tmp_path: Path) -> None:
    result = meshops("init", tmp_path, "--name", "Bad_Name")
    assert result.returncode == 1
    assert "--name: 'Bad_Name' is not a valid mesh name" in result.stderr
    assert not (tmp_path / "mesh.yaml").exists()
