"""The one test harness of chatmesh's Python suites (IntegrationTests/integration and
IntegrationTests/browser) and of bench/run.py. Both suites put IntegrationTests/ on sys.path
(their conftest.py) and import from its modules:

    harness.process   stop_process, popen (ETXTBSY retry), ChildProcess, the subreaper and
                      orphan reaping, wait_until, free_ports; plain Python, so bench/run.py
                      runs on the system python3 too
    harness.node      NodeProcess (`chatmesh serve`), Metrics, config_text (a cluster.conf)
    harness.clients   RecordingClient, SioClient, PacedSender, says/numbered, message builders
    harness.cluster   Cluster(fanout=..., nodes=...), and the teardown (`teardown`, `factory`)
                      that stops everything and dumps every log when a test failed
    harness.page      the chat page helpers of the browser tests (selenium)
"""
