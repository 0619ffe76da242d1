"""The prompt library: built-ins, user and project overrides, Jinja files, few-shot pairs, bad input."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate

from agentkit.errors import BadInputError
from agentkit.prompts import BUILTIN_DIR, MissingVariableError, PromptLibrary, load_prompt, parse_ref

BUILTIN_VARIABLES = {
    "rag_answer": ["passages", "question"],
    "summarize_map": ["text"],
    "summarize_reduce": ["summaries"],
    "classify": ["labels", "text"],
    "route": ["question", "routes"],
    "conversation_summary": ["max_words", "new_lines", "summary"],
}
SAMPLE_INPUTS = {
    "rag_answer": {"question": "Q?", "passages": [{"source": "a.md", "chunk": 2, "text": "alpha"}]},
    "summarize_map": {"text": "Some text."},
    "summarize_reduce": {"summaries": ["first part", "second part"]},
    "classify": {"text": "hello", "labels": ["greeting", "other"]},
    "route": {"question": "2+2?", "routes": [{"name": "math", "description": "sums"}]},
    "conversation_summary": {"summary": "", "new_lines": "User: hi", "max_words": 40},
}


@pytest.fixture()
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTKIT_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "prompts").mkdir(parents=True)
    return tmp_path / "home" / "prompts"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


SIMPLE = textwrap.dedent("""
    description: a test prompt
    messages:
      - role: system
        template: You are terse.
      - role: user
        template: "{question}"
""")


# ---- built-ins -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BUILTIN_VARIABLES))
def test_builtin_prompts_load_and_render(name: str, user_home: Path) -> None:
    prompt = load_prompt(name)
    assert isinstance(prompt, ChatPromptTemplate)
    assert sorted(prompt.input_variables) == BUILTIN_VARIABLES[name]
    assert prompt.metadata == {"agentkit_prompt": f"{name}@1"}
    messages = prompt.invoke(SAMPLE_INPUTS[name]).to_messages()
    assert isinstance(messages[0], SystemMessage) and isinstance(messages[-1], HumanMessage)
    assert "{{" not in messages[-1].content and "{%" not in messages[-1].content


def test_every_builtin_prompt_file_is_valid() -> None:
    library = PromptLibrary([BUILTIN_DIR])  # includes prompts other modules add to the folder
    assert set(BUILTIN_VARIABLES) <= set(library.names())
    for name in library.names():
        spec = library.spec(name)
        assert spec.description and spec.input_variables == spec.required_variables(), name


def test_rag_answer_numbers_passages_and_cites_source_chunk(user_home: Path) -> None:
    passages = [{"source": "faq.md", "chunk": 3, "text": "Refunds take 5 days."},
                {"source": "faq.md", "chunk": 4, "text": "Shipping is free."}]  # fmt: skip
    messages = load_prompt("rag_answer").invoke({"question": "How long?", "passages": passages}).to_messages()
    assert "[1] [faq.md#3] Refunds take 5 days.\n[2] [faq.md#4] Shipping is free." in messages[-1].content
    assert "I don't know" in messages[0].content and "[source#chunk]" in messages[0].content
    # The few-shot pairs come between the system message and the question, and show both behaviours.
    examples = [m.content for m in messages[1:-1]]
    assert any("[bridge.md#0]" in text for text in examples) and "I don't know." in examples
    empty = load_prompt("rag_answer").invoke({"question": "Q?", "passages": []}).to_messages()
    assert "(no passages)" in empty[-1].content


def test_builtin_prompt_files_ship_as_package_data() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"agentkit.prompts.builtin" = ["*.yaml", "*.jinja"]' in pyproject
    assert BUILTIN_DIR.is_dir() and {p.suffix for p in BUILTIN_DIR.iterdir()} <= {".yaml", ".jinja"}


# ---- addressing and overrides -----------------------------------------------------------------
def test_refs_parse() -> None:
    assert parse_ref("rag_answer") == ("rag_answer", None)
    assert parse_ref("rag_answer@latest") == ("rag_answer", None)
    assert parse_ref("rag_answer@2") == ("rag_answer", 2)
    with pytest.raises(BadInputError, match="NAME@VERSION"):
        parse_ref("rag_answer@two")


def test_user_folder_adds_versions_and_overrides_builtins(user_home: Path) -> None:
    write(user_home, "rag_answer@2.yaml", SIMPLE)
    write(user_home, "classify.yaml", SIMPLE)  # no @N: version 1, replacing the built-in classify@1
    library = PromptLibrary.default()
    assert library.versions("rag_answer") == [1, 2]
    assert load_prompt("rag_answer").metadata == {"agentkit_prompt": "rag_answer@2"}  # latest
    assert load_prompt("rag_answer@1").input_variables == ["passages", "question"]  # the built-in
    assert load_prompt("classify").input_variables == ["question"]
    assert library.path("classify") == user_home / "classify.yaml"


def test_project_folder_overrides_the_user_folder(user_home: Path, tmp_path: Path) -> None:
    project = tmp_path / "project_prompts"
    project.mkdir()
    write(user_home, "greet.yaml", SIMPLE)
    write(project, "greet.yaml", SIMPLE.replace("You are terse.", "You are the project."))
    messages = load_prompt("greet", folders=[project]).invoke({"question": "hi"}).to_messages()
    assert messages[0].content == "You are the project."


def test_edited_file_is_reread(user_home: Path) -> None:
    path = write(user_home, "greet.yaml", SIMPLE)
    assert load_prompt("greet").invoke({"question": "x"}).to_messages()[0].content == "You are terse."
    path.write_text(path.read_text().replace("terse", "verbose") + "\n")
    assert load_prompt("greet").invoke({"question": "x"}).to_messages()[0].content == "You are verbose."


# ---- formats and few-shot ------------------------------------------------------------------------
def test_few_shot_pairs_follow_the_system_message_and_braces_stay_literal(user_home: Path) -> None:
    write(
        user_home,
        "fx.yaml",
        """
        messages:
          - role: system
            template: Convert to JSON.
          - role: user
            template: "Item: {item}"
        few_shot:
          - input: {item: apple}
            output: '{"name": "apple"}'
          - input: "Item: literal {not_a_variable}"
            output: '{"name": "?"}'
    """,
    )
    messages = load_prompt("fx").invoke({"item": "pear"}).to_messages()
    assert [type(m) for m in messages] == [
        SystemMessage,
        HumanMessage,
        AIMessage,
        HumanMessage,
        AIMessage,
        HumanMessage,
    ]
    assert [m.content for m in messages[1:]] == [
        "Item: apple",
        '{"name": "apple"}',
        "Item: literal {not_a_variable}",
        '{"name": "?"}',
        "Item: pear",
    ]


def test_jinja_file_with_front_matter_and_role_markers(user_home: Path) -> None:
    write(
        user_home,
        "haiku@3.jinja",
        """
        {#
        description: A haiku.
        few_shot:
          - input: {topic: rain}
            output: Soft rain on the roof.
        #}
        {# system #}
        You write haiku{% if strict %}, 5-7-5 exactly{% endif %}.
        {# user #}
        A haiku about {{ topic }}.
    """,
    )
    prompt = load_prompt("haiku")
    assert prompt.metadata == {"agentkit_prompt": "haiku@3"} and prompt.input_variables == ["strict", "topic"]
    messages = prompt.invoke({"topic": "snow", "strict": True}).to_messages()
    assert [m.content for m in messages] == [
        "You write haiku, 5-7-5 exactly.",
        "A haiku about rain.",
        "Soft rain on the roof.",
        "A haiku about snow.",
    ]


def test_jinja_file_without_markers_is_one_user_message(user_home: Path) -> None:
    write(user_home, "plain.jinja", "Say {{ word }} twice.\n")
    messages = load_prompt("plain").invoke({"word": "hi"}).to_messages()
    assert (
        len(messages) == 1
        and isinstance(messages[0], HumanMessage)
        and messages[0].content == "Say hi twice."
    )


def test_placeholder_role_takes_history_messages(user_home: Path) -> None:
    write(
        user_home,
        "chat.yaml",
        """
        messages:
          - role: system
            template: Be kind.
          - role: placeholder
            template: history
          - role: user
            template: "{question}"
    """,
    )
    prompt = load_prompt("chat")
    assert prompt.input_variables == ["question"]  # history is optional
    plain = prompt.invoke({"question": "q"}).to_messages()
    with_history = prompt.invoke(
        {"question": "q", "history": [HumanMessage("a"), AIMessage("b")]}
    ).to_messages()
    assert len(plain) == 2 and [m.content for m in with_history] == ["Be kind.", "a", "b", "q"]


def test_prompt_drives_a_chat_model_as_messages(user_home: Path) -> None:
    seen: list = []
    model = GenericFakeChatModel(messages=iter([AIMessage("greeting")]))
    chain = load_prompt("classify") | (lambda value: seen.append(value.to_messages()) or value) | model
    assert chain.invoke({"text": "hello there", "labels": ["greeting", "other"]}).content == "greeting"
    # The model gets messages (it applies its own chat template), not a pre-rendered string.
    roles = [m.type for m in seen[0]]
    assert roles == ["system", "human", "ai", "human", "ai", "human"]


# ---- bad input ---------------------------------------------------------------------------------
def test_unknown_name_lists_the_available_prompts(user_home: Path) -> None:
    with pytest.raises(BadInputError, match="Unknown prompt 'rag_anser'; available: .*rag_answer") as info:
        load_prompt("rag_anser")
    assert "Fix:" in str(info.value)


def test_unknown_version_lists_the_versions(user_home: Path) -> None:
    write(user_home, "rag_answer@3.yaml", SIMPLE)
    with pytest.raises(BadInputError, match=r"no version 2; versions: 1, 3"):
        load_prompt("rag_answer@2")


def test_missing_variable_names_it_on_invoke_and_format(user_home: Path) -> None:
    prompt = load_prompt("rag_answer")
    with pytest.raises(MissingVariableError, match=r"rag_answer@1 is missing variable\(s\) passages"):
        prompt.invoke({"question": "Q?"})
    # jinja2 would otherwise render a missing variable as '' without a word.
    with pytest.raises(KeyError, match="passages"):
        prompt.format_messages(question="Q?")


def test_invalid_yaml_names_file_and_line(user_home: Path) -> None:
    path = write(
        user_home, "broken.yaml", "description: ok\nmessages:\n  - role: user\n    template: [unclosed\n"
    )
    with pytest.raises(BadInputError, match=rf"{path}:\d+:\d+: invalid YAML"):
        load_prompt("broken")


def test_invalid_yaml_in_jinja_front_matter_names_the_line(user_home: Path) -> None:
    path = write(user_home, "fm.jinja", "{#\ndescription: ok\nfew_shot: [oops\n#}\nHi {{ x }}\n")
    with pytest.raises(BadInputError, match=rf"{path}:\d:\d+: invalid YAML"):
        load_prompt("fm")


def test_unknown_field_is_named(user_home: Path) -> None:
    write(user_home, "typo.yaml", SIMPLE + "few_shots: []\n")
    with pytest.raises(BadInputError, match="few_shots"):
        load_prompt("typo")


def test_declared_variables_must_match_the_templates(user_home: Path) -> None:
    write(user_home, "vars.yaml", SIMPLE + "input_variables: [question, context]\n")
    with pytest.raises(BadInputError, match=r"input_variables \['context', 'question'\] do not match"):
        load_prompt("vars")


def test_few_shot_example_missing_a_variable(user_home: Path) -> None:
    write(user_home, "ex.yaml", SIMPLE + "few_shot:\n  - input: {quest: hi}\n    output: hello\n")
    with pytest.raises(BadInputError, match=r"few_shot\[0\]\.input lacks question"):
        load_prompt("ex")


def test_name_inside_the_file_must_match_the_file_name(user_home: Path) -> None:
    write(user_home, "alpha@2.yaml", SIMPLE + "name: beta\n")
    with pytest.raises(BadInputError, match="disagrees with the file name"):
        load_prompt("alpha")


def test_two_files_with_one_address_in_a_folder(user_home: Path) -> None:
    write(user_home, "dup.yaml", SIMPLE)
    write(user_home, "dup@1.jinja", "{{ x }}")
    with pytest.raises(BadInputError, match="both define dup@1"):
        load_prompt("dup")


def test_bad_file_name_and_bad_jinja(user_home: Path) -> None:
    write(user_home, "Bad Name.yaml", SIMPLE)
    with pytest.raises(BadInputError, match="not a prompt address"):
        load_prompt("rag_answer")
    (user_home / "Bad Name.yaml").unlink()
    write(user_home, "syntax.jinja", "Hello {{ name \n")
    with pytest.raises(BadInputError, match=r"invalid jinja2 template \(line 1"):
        load_prompt("syntax")
