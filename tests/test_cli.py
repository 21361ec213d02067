from zhllm import artifacts, cli


def test_results_table_reads_every_built_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZHLLM_RUNS", str(tmp_path))
    assert "run `zhllm demo`" in cli.results_table("tiny")
    for stage, metrics in [("base", {"params": 5310720, "en_bpc_heldout": 2.4463}),
                           ("cpt", {"merge_max_abs_logit_diff": 3.8e-06})]:
        with artifacts.building(stage, "tiny") as out:
            artifacts.write_metrics(out, metrics)
    assert cli.main(["results", "--profile", "tiny"]) == 0
    table = capsys.readouterr().out
    assert "5,310,720" in table and "params" in table
    assert "2.446" in table and "3.8e-06" in table  # small values keep their digits
    assert table.index("base") < table.index("cpt")


def test_errors_are_reported_not_raised(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZHLLM_RUNS", str(tmp_path))
    monkeypatch.setattr(artifacts, "STAGES", ("base", "sft"))
    monkeypatch.setattr(artifacts, "BUILDERS", {})
    assert cli.main(["demo", "--profile", "tiny"]) == 0  # nothing wired: an empty, explained table
    assert "no stage has been built yet" in capsys.readouterr().out
    monkeypatch.setenv("ZHLLM_PROFILE", "huge")
    assert cli.main(["results"]) == 2
    assert "unknown profile" in capsys.readouterr().err
