from seqtrack_mlflow.train.progress import Report, due_reports, format_hms, report_lines, report_metrics


def test_format_hms_keeps_hours_unbounded() -> None:
    assert format_hms(0) == "0:00:00"
    assert format_hms(65.4) == "0:01:05"
    assert format_hms(30 * 3600 + 7) == "30:00:07"


def test_format_hms_shows_hundredths_under_a_second() -> None:
    assert format_hms(0.42) == "0:00:00.42"
    assert format_hms(0.004) == "0:00:00.00" and format_hms(0.996) == "0:00:01"
    assert format_hms(1.4) == "0:00:01"  # a second or more: whole seconds, as the official format


def test_a_fast_report_keeps_its_meaning_with_sub_second_precision() -> None:
    # tiny's batch of 16: a report every 48 or 64 samples, the time line still for 50 samples
    r = Report(1, 64, 3200, 64, 0.64, 0.64, 0.64, 64, 4.0, 0.03, 50)
    lines = report_lines(r)
    assert lines[1] == "time for last 50 samples : 0:00:00.50 hours"  # 0.01 s/sample x 50
    assert lines[2] == "time since beginning : 0:00:00.64 hours"
    assert report_metrics(r)["time_last_50_samples_s"] == 0.5  # the metric holds the same figure


def test_report_lines_match_design_format() -> None:
    r = Report(
        epoch=2,
        epoch_samples=150,
        epoch_total=600,
        window_samples=50,
        window_seconds=12.0,
        since_start_seconds=3725.0,
        epoch_seconds=36.0,
        global_step=750,
        loss=1.23456,
        iou=0.5,
        log_every=50,
    )
    assert report_lines(r) == [
        "Epoch 2 : 150 / 600",
        "time for last 50 samples : 0:00:12 hours",
        "time since beginning : 1:02:05 hours",
        "time left to finish epoch : 0:01:48 hours",
        "loss : 1.2346",
        "IoU : 0.5000",
    ]
    m = report_metrics(r)
    assert m["time_last_50_samples_s"] == 12.0 and m["epoch_eta_s"] == 108.0 and m["samples_per_s"] == 50 / 12


def test_window_overshoot_is_normalised_to_log_every() -> None:
    r = Report(1, 64, 640, 64, 6.4, 6.4, 6.4, 64, 1.0, 0.1, 50)
    assert r.per_report_seconds == 5.0  # 0.1 s per sample


def test_due_reports() -> None:
    assert due_reports(40, 50, 50) and due_reports(48, 56, 50)
    assert not due_reports(50, 60, 50) and not due_reports(0, 49, 50)


def test_console_bar_keeps_reports_in_the_log_file_only(tmp_path, capsys) -> None:
    from seqtrack_mlflow.train.trainer import LogFile

    lines = ["Epoch 1 : 50 / 100", "loss : 1.0000"]
    LogFile(tmp_path / "a.txt", "reports").write(lines)
    assert capsys.readouterr().out == "\n".join(lines) + "\n"
    LogFile(tmp_path / "b.txt", "bar").write(lines)
    assert capsys.readouterr().out == ""
    assert (tmp_path / "b.txt").read_text() == (tmp_path / "a.txt").read_text() == "\n".join(lines) + "\n"
