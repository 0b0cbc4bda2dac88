"""``--key=value`` parsing shared by the plugin's command lines."""
import pytest

from recbole_hnlm.cli_settings import parse_settings, parse_value


def test_values_are_literals_yaml_words_or_strings():
    assert parse_value("10") == 10 and parse_value("1e-3") == 1e-3 and parse_value("[64, 32]") == [64, 32]
    assert parse_value("True") is True and parse_value("false") is False and parse_value("none") is None
    assert parse_value("~") is None  # YAML's null, as the option messages write it
    assert parse_value("LightGCN") == "LightGCN" and parse_value("/data/atomic") == "/data/atomic"


def test_settings_and_errors():
    assert parse_settings(["--epochs=5", "--hnlm_variant=finetuned"], pytest.fail) == {
        "epochs": 5, "hnlm_variant": "finetuned"}
    assert parse_settings(["--eval_args={'order': 'RO'}"], pytest.fail) == {"eval_args": {"order": "RO"}}

    def error(message):
        raise ValueError(message)

    with pytest.raises(ValueError, match="'--epochs'.*--key=value"):
        parse_settings(["--epochs"], error)
    with pytest.raises(ValueError, match="'epochs=3'"):
        parse_settings(["epochs=3"], error)


def test_a_misspelt_flag_of_the_command_is_suggested():
    def error(message):
        raise ValueError(message)

    flags = ["--keep_seen", "--users", "--out"]
    with pytest.raises(ValueError, match="'--keep-seen': did you mean --keep_seen"):
        parse_settings(["--keep-seen"], error, flags=flags)
    with pytest.raises(ValueError, match="'--usrs': did you mean --users"):
        parse_settings(["--usrs"], error, flags=flags)
    with pytest.raises(ValueError, match="settings are written --key=value"):  # nothing close: the general rule
        parse_settings(["--epochs"], error, flags=flags)


def test_a_setting_with_a_dash_is_refused_not_taken_for_a_recbole_option():
    """``tune --max-evals=1`` ran the whole search: ``max-evals`` became a RecBole setting (a warning), and was stored
    in the trials' settings, so the same command without it was refused later."""
    def error(message):
        raise ValueError(message)

    with pytest.raises(ValueError, match=r"'--max-evals=1': did you mean --max_evals=1\?"):
        parse_settings(["--max-evals=1"], error, flags=["--max_evals", "--out"])
    with pytest.raises(ValueError, match="option names have underscores: --learning_rate"):
        parse_settings(["--learning-rate=0.01"], error, flags=["--max_evals"])
    assert parse_settings(["--data_path=/data/my-sets", "--x=a-b"], error) == {"data_path": "/data/my-sets",
                                                                              "x": "a-b"}


def test_a_value_that_is_no_literal_stays_text():
    """A dict with a list key (unhashable) raised TypeError out of the command line's parsing, deep nesting a
    RecursionError; both are strings, as any other value that is no Python literal."""
    assert parse_value("{[1]: 2}") == "{[1]: 2}"
    assert parse_value("[" * 5000) == "[" * 5000
    assert parse_value("[1, 2]") == [1, 2]
