"""Alerts: mail to the citizen when something happens to their documents (apps granted or
depositing documents, a share link opened, a validity date coming), each kind switched on or off."""
