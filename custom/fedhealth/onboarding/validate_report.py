"""The terminal report of ``validate-site``: counts and metrics only, never a patient value."""

from __future__ import annotations

from fedhealth.onboarding.decision import fmt


def _line(label: str, metric: str, score: dict | None) -> str:
    if score is None:
        return f"{label:<18}not run"
    if score["value"] is None:
        return f"{label:<18}{metric} undefined: {score['reason']}"
    line = f"{label:<18}{metric} {score['value']:.3f} (95% CI {fmt(score['lo'])} to {fmt(score['hi'])})"
    return line + (f", finding {score['finding']!r} (the lowest bound)" if "finding" in score else "")


def _findings_lines(result: dict, metric: str) -> list[str]:
    """A multi-label task: each finding's evaluation count and scores."""
    lines = []
    for name, counts in result.get("findings", {}).items():
        models = [("global", result["global"]), ("fine-tuned", result["fine_tuned"])]
        scores = [
            f"{label} " + _line("", metric, score["per_finding"][name]).strip()
            for label, score in models
            if score is not None
        ]
        lines.append(f"  {name}: {counts['n_eval_pos']} positive in evaluation; " + "; ".join(scores))
    return lines


def format_report(result: dict) -> str:
    """A terminal report of :func:`validate_site`'s result (counts and metrics only)."""
    metric = result["metric"].upper() if result["metric"] == "auc" else result["metric"]
    outcome = result.get("outcome", "disease")
    unit = result.get("unit", "patients")
    lines = [
        f"validate-site: {metric} against threshold {result['threshold']:g} "
        "(the 95% interval's lower bound must reach it)",
        f"site data: {result['n_total']} labelled {unit} from {', '.join(result['files'])}",
        *(f"  {line}" for line in result.get("data_report", [])),
        *(f"  note: {line}" for line in result.get("schema_notes", [])),
        f"  evaluation part: {result['n_eval']} ({result['n_eval_pos']} with {outcome}, "
        f"{result['n_eval_neg']} without); fine-tuning part: {result['n_finetune']} (never reported on)",
        _line("global model:", metric, result["global"]),
    ]
    if result["fine_tuned"] is not None:
        ft = result["fine_tuning"]
        how = (
            f"{ft['boosting_rounds']} more trees, eta {ft['eta']:g}"
            if "boosting_rounds" in ft
            else f"{ft['epochs']} epochs, lr {ft['lr']:g}, batch {ft['batch_size']}"
            + (f", {ft['optimizer']}" if "optimizer" in ft else "")
        )
        lines.append(_line("fine-tuned model:", metric, result["fine_tuned"]) + f"  [{how}]")
    lines += _findings_lines(result, metric)
    lines += [f"decision: {result['decision']}", f"reason: {result['reason']}"]
    return "\n".join(lines)
