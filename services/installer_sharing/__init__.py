"""installer_sharing: forwards a buyer's contact details to the installer and tells installers to erase them."""
