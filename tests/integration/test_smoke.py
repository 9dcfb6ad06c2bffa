from support import new_ticket


def test_create_ticket_publishes_event(tickets, rpc, event_log):
    log = event_log("tickets")
    t = new_ticket(rpc)
    assert t["number"].startswith("HD-")
    events = log.wait_for(1)
    assert events[0]["type"] == "ticket_created"
    assert events[0]["payload"]["ticket"]["id"] == t["id"]
