"""What `make dev` prints of the functions' output without --function-logs (local.functions.QuietOutput)."""

import io
import json

from local.functions import QuietOutput


def test_only_warnings_errors_and_plain_text_get_through_whole_lines_at_a_time():
    target = io.StringIO()
    quiet = QuietOutput(target)
    info = json.dumps({"level": "INFO", "message": "status sync pass"})
    metrics = json.dumps({"_aws": {"CloudWatchMetrics": []}, "StatusSyncBacklog": [0.0]})
    warning = json.dumps({"level": "WARNING", "message": "Hilos answered 503"})
    error = json.dumps({"level": "ERROR", "message": "unexpected"})

    quiet.write(info + "\n" + metrics + "\n" + warning[:10])
    assert target.getvalue() == ""  # half a line waits for its end
    quiet.write(warning[10:] + "\n" + error + "\nTraceback (most recent call last):\n\n")

    assert target.getvalue().splitlines() == [warning, error, "Traceback (most recent call last):"]
