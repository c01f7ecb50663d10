#!/bin/bash -e
export DEBIAN_FRONTEND=noninteractive
# No swap file on the SD card.
if dpkg -s dphys-swapfile >/dev/null 2>&1; then
	apt-get purge -y dphys-swapfile
fi
# No periodic package-list downloads or man-db rebuilds: the box changes only
# through the agent's self-update or a technician.
for timer in apt-daily.timer apt-daily-upgrade.timer man-db.timer; do
	systemctl mask "$timer"
done
