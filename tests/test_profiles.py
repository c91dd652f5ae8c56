"""Permission profiles: built-ins, YAML loading, errors, tool gating and approvals."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from rho_actors._errors import ConfigError
from rho_actors._profiles import (
    BUILTIN_PROFILES,
    PermissionProfile,
    ProfileInfo,
    list_profiles,
    load_profile,
    user_profile_dir,
)

REPO = Path(__file__).resolve().parent.parent


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty project directory (profiles/ is looked up from the cwd)."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


# --- built-ins -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shell", "file_write", "database", "approval", "confined", "sandbox"),
    [
        ("readonly", "restricted", "off", "readonly", "none", True, "required"),
        ("developer", "unrestricted", "full", "mutations", "dangerous", True, "off"),
        ("unrestricted", "unrestricted", "full", "mutations", "none", False, "off"),
    ],
)
def test_builtin_profiles(
    name: str,
    shell: str,
    file_write: str,
    database: str,
    approval: str,
    confined: bool,
    sandbox: str,
) -> None:
    """The three built-ins have the documented modes."""
    profile = load_profile(name)
    assert profile is BUILTIN_PROFILES[name]
    assert (profile.shell, profile.file_write, profile.database, profile.approval) == (
        shell,
        file_write,
        database,
        approval,
    )
    assert profile.confine_to_working_dir is confined
    assert profile.sandbox == sandbox


def test_none_means_developer() -> None:
    """No profile given means the developer profile."""
    assert load_profile(None).name == "developer"


def test_profile_object_passes_through() -> None:
    """A PermissionProfile is returned as is."""
    custom = PermissionProfile(name="mine")
    assert load_profile(custom) is custom


def test_defaults_are_those_of_readonly() -> None:
    """A profile that names nothing else is as strict as readonly."""
    readonly = BUILTIN_PROFILES["readonly"]
    assert PermissionProfile(name="x") == attrs.evolve(readonly, name="x", description="")


def test_invalid_mode_in_code_is_rejected() -> None:
    """Constructing a profile with an unknown mode fails at once."""
    with pytest.raises(ValueError, match="file_write"):
        PermissionProfile(name="x", file_write="maybe")  # type: ignore[arg-type]


def test_profiles_are_frozen() -> None:
    """Profiles cannot be changed after creation; evolve makes a new one."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        BUILTIN_PROFILES["readonly"].shell = "unrestricted"  # type: ignore[misc]


# --- shipped example files ------------------------------------------------------


@pytest.mark.parametrize("name", ["readonly", "developer"])
def test_shipped_yaml_matches_builtin(name: str) -> None:
    """profiles/NAME.yaml documents the built-in exactly."""
    assert load_profile(REPO / "profiles" / f"{name}.yaml") == BUILTIN_PROFILES[name]


def test_shipped_ci_reviewer_extends_readonly() -> None:
    """The example custom profile loads and changes only what it names."""
    profile = load_profile(str(REPO / "profiles" / "ci-reviewer.yaml"))
    readonly = BUILTIN_PROFILES["readonly"]
    assert profile.name == "ci-reviewer"
    assert profile.file_write == "create-only"
    assert profile.sandbox == "required"
    assert "pytest" in profile.shell_allowlist
    assert "hostname" not in profile.shell_allowlist
    assert profile.shell_blocklist == readonly.shell_blocklist
    assert profile.database == readonly.database
    assert not profile.allows_tool("sqlite")


# --- finding profiles by name -----------------------------------------------------


def test_name_found_in_project_profiles_dir(in_project: Path) -> None:
    """NAME resolves to ./profiles/NAME.yaml."""
    _write(in_project / "profiles" / "team.yaml", "shell: 'off'\n")
    profile = load_profile("team")
    assert profile.name == "team"
    assert profile.shell == "off"


def test_name_found_in_user_config_dir(in_project: Path, tmp_path: Path) -> None:
    """NAME resolves to $RHO_ACTORS_CONFIG_DIR/profiles/NAME.yaml (set by conftest)."""
    assert user_profile_dir() == tmp_path / "config" / "profiles"
    _write(user_profile_dir() / "mine.yml", "file_write: create-only\n")
    assert load_profile("mine").file_write == "create-only"


def test_name_found_directly_in_config_dir(in_project: Path, tmp_path: Path) -> None:
    """Profiles placed directly in $RHO_ACTORS_CONFIG_DIR are found too."""
    _write(tmp_path / "config" / "flat.yaml", "network: true\n")
    assert load_profile("flat").network is True


def test_default_user_dir_is_under_dot_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without the variable, profiles live in ~/.config/rho-actors/profiles."""
    monkeypatch.delenv("RHO_ACTORS_CONFIG_DIR")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_profile_dir() == tmp_path / ".config" / "rho-actors" / "profiles"


def test_user_dir_wins_over_project(in_project: Path) -> None:
    """The user's own profile shadows a project file of the same name."""
    _write(in_project / "profiles" / "same.yaml", "description: project\n")
    _write(user_profile_dir() / "same.yaml", "description: user\n")
    assert load_profile("same").description == "user"


def test_builtin_names_cannot_be_shadowed(in_project: Path) -> None:
    """A project file named readonly.yaml does not replace the built-in."""
    _write(in_project / "profiles" / "readonly.yaml", "shell: unrestricted\n")
    assert load_profile("readonly") is BUILTIN_PROFILES["readonly"]


def test_unknown_name_lists_known_profiles(in_project: Path) -> None:
    """An unknown name is a ConfigError that says what exists."""
    with pytest.raises(ConfigError, match=r"no profile named 'nope'.*readonly, developer"):
        load_profile("nope")


def test_list_profiles_reports_sources(in_project: Path) -> None:
    """list_profiles gives each loadable name once, with where it comes from."""
    project_file = _write(in_project / "profiles" / "team.yaml", "{}\n")
    _write(in_project / "profiles" / "readonly.yaml", "{}\n")
    user_file = _write(user_profile_dir() / "mine.yaml", "{}\n")
    infos = list_profiles()
    assert [i.name for i in infos] == ["readonly", "developer", "unrestricted", "mine", "team"]
    assert infos[0] == ProfileInfo(name="readonly", source="built-in")
    assert infos[3] == ProfileInfo(name="mine", source="user", path=user_file)
    assert infos[4].source == "project"
    assert infos[4].path is not None and infos[4].path.resolve() == project_file.resolve()


# --- YAML content ------------------------------------------------------------------


def test_extends_and_overrides(in_project: Path) -> None:
    """extends: starts from another profile and overrides only the named fields."""
    path = _write(
        in_project / "p.yaml",
        "extends: developer\ndescription: mine\napproval: all\nbash_timeout: 5\n",
    )
    profile = load_profile(path)
    developer = BUILTIN_PROFILES["developer"]
    assert profile == attrs.evolve(
        developer, name="p", description="mine", approval="all", bash_timeout=5.0
    )


def test_extends_chain_and_relative_path(in_project: Path) -> None:
    """A profile may extend another file, by a path relative to itself."""
    _write(in_project / "cfg" / "base.yaml", "extends: readonly\nnetwork: true\n")
    leaf = _write(in_project / "cfg" / "leaf.yaml", "extends: ./base.yaml\nmax_output_chars: 10\n")
    profile = load_profile(leaf)
    assert profile.network is True
    assert profile.max_output_chars == 10
    assert profile.shell == "restricted"


def test_extends_cycle_is_an_error(in_project: Path) -> None:
    """Profiles that extend each other in a loop are rejected."""
    _write(in_project / "a.yaml", "extends: ./b.yaml\n")
    _write(in_project / "b.yaml", "extends: ./a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_profile("a.yaml")


def test_list_fields_add_and_remove(in_project: Path) -> None:
    """List fields take a replacement list or {add, remove} edits of the inherited one."""
    path = _write(
        in_project / "p.yaml",
        "shell_allowlist:\n  add: [make]\n  remove: [git]\nshell_blocklist: [curl]\n"
        "approval: granular\napproval_tools: [bash]\ntools: [read, bash]\n",
    )
    profile = load_profile(path)
    assert "make" in profile.shell_allowlist
    assert "git" not in profile.shell_allowlist
    assert profile.shell_blocklist == ("curl",)
    assert profile.approval_tools == ("bash",)
    assert profile.tools == frozenset({"read", "bash"})


def test_bad_enum_value_names_file_key_and_choices(in_project: Path) -> None:
    """A bad mode value says which file, which key, what was given and what is allowed."""
    _write(in_project / "profiles" / "x.yaml", "description: d\nfile_write: maybe\n")
    with pytest.raises(ConfigError) as info:
        load_profile("profiles/x.yaml")
    message = str(info.value)
    assert message.startswith("profiles/x.yaml: key 'file_write': got 'maybe'")
    assert "on line 2" in message
    assert message.endswith("(expected one of off, create-only, full)")
    assert info.value.file == "profiles/x.yaml"
    assert info.value.key == "file_write"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("colour: blue\n", "colour", "one of name, extends, description"),
        ("network: 'yes please'\n", "network", "true or false"),
        ("max_output_chars: 0\n", "max_output_chars", "a positive integer"),
        ("max_output_chars: true\n", "max_output_chars", "a positive integer"),
        ("bash_timeout: soon\n", "bash_timeout", "a positive number of seconds"),
        ("shell_allowlist: ls\n", "shell_allowlist", "a list of strings"),
        ("shell_allowlist: {add: ls}\n", "shell_allowlist", "a list of strings"),
        ("tools: bash\n", "tools", "a list of tool names"),
        ("extends: 3\n", "extends", "the name or path of another profile"),
        ("name: 'bad name!'\n", "name", "letters, digits"),
        ("name: readonly\n", "name", "not a built-in"),
        ("sandbox: maybe\n", "sandbox", "one of required, preferred, off"),
    ],
)
def test_bad_values(in_project: Path, text: str, key: str, expected: str) -> None:
    """Every field is type-checked, and unknown keys are errors too."""
    path = _write(in_project / "p.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert info.value.key == key
    assert info.value.expected is not None and expected in info.value.expected
    assert str(path) in str(info.value)


def test_invalid_yaml_names_file_and_line(in_project: Path) -> None:
    """A YAML syntax error is a ConfigError with the file and the line."""
    path = _write(in_project / "p.yaml", "shell: restricted\nfile_write: [unclosed\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: invalid YAML on line \d"):
        load_profile(path)


def test_yaml_must_be_a_mapping(in_project: Path) -> None:
    """A list at the top level is not a profile."""
    path = _write(in_project / "p.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="got a list"):
        load_profile(path)


def test_missing_file_is_a_config_error(in_project: Path) -> None:
    """A path that does not exist is reported as such."""
    with pytest.raises(ConfigError, match=r"missing\.yaml: profile file not found"):
        load_profile("missing.yaml")


def test_empty_file_is_readonly_under_its_own_name(in_project: Path) -> None:
    """An empty profile file is the readonly profile named after the file."""
    path = _write(in_project / "quiet.yaml", "")
    assert load_profile(path) == attrs.evolve(BUILTIN_PROFILES["readonly"], name="quiet")


# --- tools and approvals ------------------------------------------------------------


def test_allows_tool_follows_modes() -> None:
    """Tools are offered according to shell and file-write modes and the tools list."""
    readonly = BUILTIN_PROFILES["readonly"]
    assert readonly.allows_tool("bash")
    assert readonly.allows_tool("read")
    assert not readonly.allows_tool("write")
    assert not readonly.allows_tool("edit")
    assert readonly.allows_tool("my_custom_tool")
    create_only = attrs.evolve(readonly, file_write="create-only", shell="off")
    assert create_only.allows_tool("write")
    assert not create_only.allows_tool("edit")
    assert not create_only.allows_tool("bash")
    listed = attrs.evolve(BUILTIN_PROFILES["developer"], tools=["read", "bash"])
    assert listed.allows_tool("bash")
    assert not listed.allows_tool("grep")
    assert not listed.allows_tool("my_custom_tool")


def test_needs_approval_none_all_granular() -> None:
    """none asks nothing, all asks everything, granular asks the listed tools."""
    base = BUILTIN_PROFILES["developer"]
    assert not attrs.evolve(base, approval="none").needs_approval("write", {})
    assert attrs.evolve(base, approval="all").needs_approval("read", {"path": "x"})
    granular = attrs.evolve(base, approval="granular", approval_tools=("sqlite",))
    assert granular.needs_approval("sqlite", {})
    assert not granular.needs_approval("bash", {"command": "rm -rf /"})


@pytest.mark.parametrize(
    ("tool", "args", "needed"),
    [
        ("write", {"path": "a", "content": ""}, True),
        ("edit", {}, True),
        ("read", {"path": "a"}, False),
        ("grep", {"pattern": "x"}, False),
        ("bash", {"command": "ls -la | grep x"}, False),
        ("bash", {"command": "git diff"}, False),
        ("bash", {"command": "make install"}, True),
        ("bash", {"command": "ls > out"}, True),
        ("bash", {"command": "ls; rm x"}, True),
        ("bash", {}, True),
        ("sqlite", {"operation": "query", "sql": "SELECT * FROM t"}, False),
        ("sqlite", {"operation": "query", "sql": "/* x */ select 1;"}, False),
        ("sqlite", {"operation": "query", "sql": "WITH x AS (SELECT 1) DELETE FROM t"}, True),
        ("sqlite", {"operation": "query", "sql": "SELECT 1; DROP TABLE t"}, True),
        ("sqlite", {"operation": "list_tables"}, False),
        ("custom", {}, False),
    ],
)
def test_needs_approval_dangerous(tool: str, args: dict[str, object], needed: bool) -> None:
    """Under 'dangerous', only calls that can change something wait for approval."""
    assert BUILTIN_PROFILES["developer"].needs_approval(tool, args) is needed


def test_dangerous_sqlite_with_readonly_database_needs_no_approval() -> None:
    """A database that cannot be changed needs no approval to query."""
    profile = attrs.evolve(BUILTIN_PROFILES["readonly"], approval="dangerous")
    assert not profile.needs_approval("sqlite", {"sql": "DELETE FROM t"})
