"""What comes back from the community after a post is sent: engagement snapshots and replies.

`commcal pull` fetches them from the networks into the ledger (`commcal.engagement.pull`);
`commcal inbox`, `commcal kb export` and `commcal report` read them back. The plain objects both
sides share are in `commcal.engagement.model`.
"""
