"""The kill switch: suspending an agent or a whole domain, announced and audited."""
