# Install rules and the Debian package (CPack): `make install` (prefix /usr/local by default) and `make deb`
# (always prefix /usr). Included last from the top-level CMakeLists.txt, once every target exists.
include(GNUInstallDirs)

# User binaries: the broker, its password tool and the load generator (benchmarks of a live node).
foreach(t ringmq ringmq-passwd ringmq-bench)
  if(TARGET ${t})
    install(TARGETS ${t} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()
if(TARGET ringmq_man)
  install(FILES ${CMAKE_BINARY_DIR}/ringmq.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES tools/prometheus/ringmq.rules.yml DESTINATION ${CMAKE_INSTALL_DATADIR}/ringmq/prometheus)
# The unit and /etc/ringmq.conf: their paths follow the prefix given at install time (cpack installs with /usr,
# `make install` with CMAKE_INSTALL_PREFIX), so they are written by a script run at install time.
install(CODE "set(RMQ_SRC \"${CMAKE_SOURCE_DIR}\")")
install(SCRIPT tools/install-service.cmake)

# ---- make deb ---------------------------------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ringmq)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "ringmq maintainers <ringmq@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "MQTT 3.1/3.1.1/5.0 broker with a built-in Kafka bridge")
set(CPACK_PACKAGE_DESCRIPTION "ringmq runs one io_uring reactor per CPU and bridges MQTT to Kafka and back.\n\
It is installed with a systemd unit (Type=notify, watchdog), /etc/ringmq.conf and Prometheus alert rules.")
# DESTDIR staging with the prefix /usr: CMAKE_INSTALL_PREFIX is /usr inside the install scripts, so the unit names
# /usr/bin/ringmq and the config lands in /etc, whatever prefix the build directory was configured with.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends from the binaries' ELF NEEDED entries (dpkg-shlibdeps): liburing2, librdkafka1, libssl3, ...
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# useradd/userdel (postinst, postrm) are in passwd, which Debian installs everywhere (Priority: required).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/tools/debian/conffiles ${CMAKE_SOURCE_DIR}/tools/debian/postinst
    ${CMAKE_SOURCE_DIR}/tools/debian/prerm ${CMAKE_SOURCE_DIR}/tools/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
