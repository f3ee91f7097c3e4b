# Install-time half of tools/packaging.cmake: the systemd unit and the example /etc/ringmq.conf, with the paths
# of the prefix being installed to (RMQ_SRC: the source tree; file(INSTALL) adds DESTDIR). /usr puts the config in /etc.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(etc /etc)
else()
  set(etc "${CMAKE_INSTALL_PREFIX}/etc")
endif()
file(READ "${RMQ_SRC}/tools/ringmq.service" unit)
string(REPLACE "/usr/bin/" "${CMAKE_INSTALL_PREFIX}/bin/" unit "${unit}")
string(REPLACE "/usr/share/" "${CMAKE_INSTALL_PREFIX}/share/" unit "${unit}")
string(REPLACE "/etc/ringmq.conf" "${etc}/ringmq.conf" unit "${unit}")
set(stage "${CMAKE_CURRENT_BINARY_DIR}/unit-stage")
file(WRITE "${stage}/ringmq.service" "${unit}")
file(INSTALL "${stage}/ringmq.service" DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${RMQ_SRC}/tools/ringmq.conf" DESTINATION "${etc}"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
