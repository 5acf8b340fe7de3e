"""output_dir/index.html links every report the app wrote, with each session's QC status."""
import json

from bibsnet_trainer.reports.index_page import write_index


def test_index_links_reports_packages_and_qc(tmp_path):
    out = tmp_path / "out"
    reports = out / "reports"
    reports.mkdir(parents=True)
    (reports / "group_desc-dice_report.html").write_text("<html></html>")
    for key, status in (("sub-01", "ok"), ("sub-02_ses-1mo", "fail")):
        (reports / f"{key}_desc-qc_report.json").write_text(json.dumps({"key": key, "status": status}))
        (reports / f"{key}_desc-qc_report.html").write_text("<html></html>")
    (reports / "participants_qc.tsv").write_text("participant_id\n")
    (out / "models" / "model_seg_aseg_t1w_nnunet").mkdir(parents=True)
    (out / "models" / "model_seg_aseg_t1w_nnunet" / "manifest.json").write_text("{}")
    page = write_index(out).read_text()
    for link in ("reports/group_desc-dice_report.html", "reports/sub-01_desc-qc_report.html",
                 "reports/sub-02_ses-1mo_desc-qc_report.html", "reports/participants_qc.tsv",
                 "models/model_seg_aseg_t1w_nnunet/manifest.json"):
        assert f"href='{link}'" in page
    assert "2 sessions: 1 ok, 1 fail" in page


def test_empty_output_says_so(tmp_path):
    assert "Nothing written here yet" in write_index(tmp_path).read_text()
