/* The dispatch table and the path of one packet through it; see
 * dispatch.h. */
#include <string.h>

#include "error.h"
#include "api/handlers.h"
#include "api/domain_api.h"
#include "host.h"
#include "log.h"
#include "message.h"
#include "remote_xdr.h"
#include "remote_host_xdr.h"
#include "remote_events_xdr.h"
#include "remote_stats_xdr.h"
#include "remote_cpu_xdr.h"
#include "remote_sched_xdr.h"
#include "remote_time_xdr.h"
#include "remote_save_xdr.h"
#include "remote_migrate_xdr.h"
#include "remote_job_xdr.h"
#include "remote_snapshot_xdr.h"
#include "domain/autodestroy.h"
#include "domain/events.h"
#include "reply_error.h"
#include "dispatch.h"
#include "forward.h"
#include "proc_names.h"
#include "stream.h"

#define VIR_FROM_THIS VIR_FROM_RPC

#define ARGS(type)	(xdrproc_t)xdr_##type, sizeof(type)
#define RET(type)	(xdrproc_t)xdr_##type, sizeof(type)
#define NONE		(xdrproc_t)rpc_xdr_void, 0
/* One entry: procedure, API name, argument and reply types, handler, flags. */
#define P(num, name, args, ret, fn, fl) [num] = { name, args, ret, fn, fl }

/* Indexed by procedure number.  Entries without a handler are procedures
 * we recognise but do not implement yet: they are refused on read-only
 * connections first, as libvirt checks write access before asking its
 * driver, then answered VIR_ERR_NO_SUPPORT like every procedure absent
 * here (proc_names.c names them; forward.c relays the secondary
 * drivers' before they get here). */
static const struct rpc_proc procs[] = {
	/* connection */
	P(REMOTE_PROC_AUTH_LIST, "virConnectAuthList", NONE, RET(remote_auth_list_ret),
		drv_auth_list, RPC_PROC_BEFORE_OPEN),
	P(REMOTE_PROC_CONNECT_OPEN, "virConnectOpen", ARGS(remote_connect_open_args), NONE,
		drv_connect_open, RPC_PROC_BEFORE_OPEN),
	P(REMOTE_PROC_CONNECT_CLOSE, "virConnectClose", NONE, NONE,
		drv_connect_close, RPC_PROC_BEFORE_OPEN),
	/* The keepalive probe comes before CONNECT_OPEN. */
	P(REMOTE_PROC_CONNECT_SUPPORTS_FEATURE, "virConnectSupportsFeature",
		ARGS(remote_connect_supports_feature_args), RET(remote_connect_supports_feature_ret),
		drv_connect_supports_feature, RPC_PROC_BEFORE_OPEN),
	P(REMOTE_PROC_CONNECT_GET_TYPE, "virConnectGetType", NONE, RET(remote_connect_get_type_ret),
		drv_connect_get_type, 0),
	P(REMOTE_PROC_CONNECT_GET_VERSION, "virConnectGetVersion", NONE,
		RET(remote_connect_get_version_ret), drv_connect_get_version, 0),
	P(REMOTE_PROC_CONNECT_GET_LIB_VERSION, "virConnectGetLibVersion", NONE,
		RET(remote_connect_get_lib_version_ret), drv_connect_get_lib_version, 0),
	P(REMOTE_PROC_CONNECT_GET_HOSTNAME, "virConnectGetHostname", NONE,
		RET(remote_connect_get_hostname_ret), drv_connect_get_hostname, 0),
	P(REMOTE_PROC_CONNECT_GET_URI, "virConnectGetURI", NONE, RET(remote_connect_get_uri_ret),
		drv_connect_get_uri, 0),
	/* virConnectIsEncrypted asks this too. */
	P(REMOTE_PROC_CONNECT_IS_SECURE, "virConnectIsSecure", NONE,
		RET(remote_connect_is_secure_ret), drv_connect_is_secure, 0),

	/* listing */
	P(REMOTE_PROC_CONNECT_LIST_ALL_DOMAINS, "virConnectListAllDomains",
		ARGS(remote_connect_list_all_domains_args), RET(remote_connect_list_all_domains_ret),
		drv_connect_list_all_domains, 0),
	P(REMOTE_PROC_CONNECT_NUM_OF_DOMAINS, "virConnectNumOfDomains", NONE,
		RET(remote_connect_num_of_domains_ret), drv_connect_num_of_domains, 0),
	P(REMOTE_PROC_CONNECT_LIST_DOMAINS, "virConnectListDomains",
		ARGS(remote_connect_list_domains_args), RET(remote_connect_list_domains_ret),
		drv_connect_list_domains, 0),
	P(REMOTE_PROC_CONNECT_NUM_OF_DEFINED_DOMAINS, "virConnectNumOfDefinedDomains", NONE,
		RET(remote_connect_num_of_defined_domains_ret), drv_connect_num_of_defined_domains, 0),
	P(REMOTE_PROC_CONNECT_LIST_DEFINED_DOMAINS, "virConnectListDefinedDomains",
		ARGS(remote_connect_list_defined_domains_args),
		RET(remote_connect_list_defined_domains_ret), drv_connect_list_defined_domains, 0),

	/* domains (MUTATING: refused on read-only connections) */
#define W RPC_PROC_MUTATING
	P(REMOTE_PROC_DOMAIN_DEFINE_XML, "virDomainDefineXML", ARGS(remote_domain_define_xml_args),
	    RET(remote_domain_define_xml_ret), drv_domain_define_xml, W),
	P(REMOTE_PROC_DOMAIN_DEFINE_XML_FLAGS, "virDomainDefineXMLFlags",
	    ARGS(remote_domain_define_xml_flags_args), RET(remote_domain_define_xml_flags_ret),
	    drv_domain_define_xml_flags, W),
	P(REMOTE_PROC_DOMAIN_UNDEFINE, "virDomainUndefine", ARGS(remote_domain_undefine_args), NONE,
	    drv_domain_undefine, W),
	P(REMOTE_PROC_DOMAIN_UNDEFINE_FLAGS, "virDomainUndefineFlags",
	    ARGS(remote_domain_undefine_flags_args), NONE, drv_domain_undefine_flags, W),
	P(REMOTE_PROC_DOMAIN_LOOKUP_BY_NAME, "virDomainLookupByName",
	    ARGS(remote_domain_lookup_by_name_args), RET(remote_domain_lookup_by_name_ret),
	    drv_domain_lookup_by_name, 0),
	P(REMOTE_PROC_DOMAIN_LOOKUP_BY_UUID, "virDomainLookupByUUID",
	    ARGS(remote_domain_lookup_by_uuid_args), RET(remote_domain_lookup_by_uuid_ret),
	    drv_domain_lookup_by_uuid, 0),
	P(REMOTE_PROC_DOMAIN_LOOKUP_BY_ID, "virDomainLookupByID",
	    ARGS(remote_domain_lookup_by_id_args), RET(remote_domain_lookup_by_id_ret),
	    drv_domain_lookup_by_id, 0),
	P(REMOTE_PROC_DOMAIN_GET_XML_DESC, "virDomainGetXMLDesc", ARGS(remote_domain_flags_args),
	    RET(remote_domain_get_xml_desc_ret), drv_domain_get_xml_desc, 0),
	P(REMOTE_PROC_DOMAIN_GET_INFO, "virDomainGetInfo", ARGS(remote_domain_args),
	    RET(remote_domain_get_info_ret), drv_domain_get_info, 0),
	P(REMOTE_PROC_DOMAIN_GET_STATE, "virDomainGetState", ARGS(remote_domain_flags_args),
	    RET(remote_domain_get_state_ret), drv_domain_get_state, 0),
	P(REMOTE_PROC_DOMAIN_GET_AUTOSTART, "virDomainGetAutostart", ARGS(remote_domain_args),
	    RET(remote_domain_get_autostart_ret), drv_domain_get_autostart, 0),
	P(REMOTE_PROC_DOMAIN_SET_AUTOSTART, "virDomainSetAutostart",
	    ARGS(remote_domain_set_autostart_args), NONE, drv_domain_set_autostart, W),
	P(REMOTE_PROC_DOMAIN_IS_ACTIVE, "virDomainIsActive", ARGS(remote_domain_args),
	    RET(remote_domain_int_ret), drv_domain_is_active, 0),
	P(REMOTE_PROC_DOMAIN_IS_PERSISTENT, "virDomainIsPersistent", ARGS(remote_domain_args),
	    RET(remote_domain_int_ret), drv_domain_is_persistent, 0),
	P(REMOTE_PROC_DOMAIN_IS_UPDATED, "virDomainIsUpdated", ARGS(remote_domain_args),
	    RET(remote_domain_int_ret), drv_domain_is_updated, 0),
	P(REMOTE_PROC_DOMAIN_HAS_MANAGED_SAVE_IMAGE, "virDomainHasManagedSaveImage",
	    ARGS(remote_domain_flags_args), RET(remote_domain_int_ret),
	    drv_domain_has_managed_save_image, 0),
	P(REMOTE_PROC_DOMAIN_GET_OS_TYPE, "virDomainGetOSType", ARGS(remote_domain_args),
	    RET(remote_domain_get_os_type_ret), drv_domain_get_os_type, 0),
	P(REMOTE_PROC_DOMAIN_GET_MAX_MEMORY, "virDomainGetMaxMemory", ARGS(remote_domain_args),
	    RET(remote_domain_get_max_memory_ret), drv_domain_get_max_memory, 0),
	P(REMOTE_PROC_DOMAIN_GET_MAX_VCPUS, "virDomainGetMaxVcpus", ARGS(remote_domain_args),
	    RET(remote_domain_int_ret), drv_domain_get_max_vcpus, 0),
	P(REMOTE_PROC_DOMAIN_GET_VCPUS_FLAGS, "virDomainGetVcpusFlags",
	    ARGS(remote_domain_flags_args), RET(remote_domain_int_ret), drv_domain_get_vcpus_flags, 0),
	P(REMOTE_PROC_DOMAIN_SET_METADATA, "virDomainSetMetadata",
	    ARGS(remote_domain_set_metadata_args), NONE, drv_domain_set_metadata, W),
	P(REMOTE_PROC_DOMAIN_GET_METADATA, "virDomainGetMetadata",
	    ARGS(remote_domain_get_metadata_args), RET(remote_domain_get_metadata_ret),
	    drv_domain_get_metadata, 0),
	P(REMOTE_PROC_DOMAIN_RENAME, "virDomainRename", ARGS(remote_domain_rename_args),
	    RET(remote_domain_rename_ret), drv_domain_rename, W),
	/* running domains */
	P(REMOTE_PROC_DOMAIN_CREATE, "virDomainCreate", ARGS(remote_domain_args), NONE,
	    drv_domain_create, W),
	P(REMOTE_PROC_DOMAIN_CREATE_XML, "virDomainCreateXML",
	    ARGS(remote_domain_define_xml_flags_args), RET(remote_domain_ret), drv_domain_create_xml, W),
	P(REMOTE_PROC_DOMAIN_CREATE_WITH_FLAGS, "virDomainCreateWithFlags",
	    ARGS(remote_domain_flags_args), RET(remote_domain_ret), drv_domain_create_with_flags, W),
	P(REMOTE_PROC_DOMAIN_DESTROY, "virDomainDestroy", ARGS(remote_domain_args), NONE,
	    drv_domain_destroy, W),
	P(REMOTE_PROC_DOMAIN_DESTROY_FLAGS, "virDomainDestroyFlags", ARGS(remote_domain_flags_args),
	    NONE, drv_domain_destroy_flags, W),
	P(REMOTE_PROC_DOMAIN_SHUTDOWN, "virDomainShutdown", ARGS(remote_domain_args), NONE,
	    drv_domain_shutdown, W),
	P(REMOTE_PROC_DOMAIN_SHUTDOWN_FLAGS, "virDomainShutdownFlags",
	    ARGS(remote_domain_flags_args), NONE, drv_domain_shutdown_flags, W),
	P(REMOTE_PROC_DOMAIN_SUSPEND, "virDomainSuspend", ARGS(remote_domain_args), NONE,
	    drv_domain_suspend, W),
	P(REMOTE_PROC_DOMAIN_RESUME, "virDomainResume", ARGS(remote_domain_args), NONE,
	    drv_domain_resume, W),
	P(REMOTE_PROC_DOMAIN_RESET, "virDomainReset", ARGS(remote_domain_flags_args), NONE,
	    drv_domain_reset, W),
	P(REMOTE_PROC_DOMAIN_REBOOT, "virDomainReboot", ARGS(remote_domain_flags_args), NONE,
	    drv_domain_reboot, W),
	P(REMOTE_PROC_DOMAIN_SET_MEMORY, "virDomainSetMemory", ARGS(remote_domain_set_memory_args),
	    NONE, drv_domain_set_memory, W),
	P(REMOTE_PROC_DOMAIN_SET_MEMORY_FLAGS, "virDomainSetMemoryFlags",
	    ARGS(remote_domain_set_memory_flags_args), NONE, drv_domain_set_memory_flags, W),
	P(REMOTE_PROC_DOMAIN_SET_MAX_MEMORY, "virDomainSetMaxMemory",
	    ARGS(remote_domain_set_max_memory_args), NONE, drv_domain_set_max_memory, W),
	P(REMOTE_PROC_DOMAIN_SET_MEMORY_STATS_PERIOD, "virDomainSetMemoryStatsPeriod",
	    ARGS(remote_domain_set_memory_stats_period_args), NONE,
	    drv_domain_set_memory_stats_period, W),
	P(REMOTE_PROC_DOMAIN_ATTACH_DEVICE, "virDomainAttachDevice",
	    ARGS(remote_domain_attach_device_args), NONE, drv_domain_attach_device, W),
	P(REMOTE_PROC_DOMAIN_ATTACH_DEVICE_FLAGS, "virDomainAttachDeviceFlags",
	    ARGS(remote_domain_attach_device_flags_args), NONE, drv_domain_attach_device_flags, W),
	P(REMOTE_PROC_DOMAIN_DETACH_DEVICE, "virDomainDetachDevice",
	    ARGS(remote_domain_detach_device_args), NONE, drv_domain_detach_device, W),
	P(REMOTE_PROC_DOMAIN_DETACH_DEVICE_FLAGS, "virDomainDetachDeviceFlags",
	    ARGS(remote_domain_detach_device_flags_args), NONE, drv_domain_detach_device_flags, W),
	P(REMOTE_PROC_DOMAIN_UPDATE_DEVICE_FLAGS, "virDomainUpdateDeviceFlags",
	    ARGS(remote_domain_update_device_flags_args), NONE, drv_domain_update_device_flags, W),
	P(REMOTE_PROC_DOMAIN_DETACH_DEVICE_ALIAS, "virDomainDetachDeviceAlias",
	    ARGS(remote_domain_detach_device_alias_args), NONE, drv_domain_detach_device_alias, W),
	P(REMOTE_PROC_DOMAIN_BLOCK_RESIZE, "virDomainBlockResize",
	    ARGS(remote_domain_block_resize_args), NONE, drv_domain_block_resize, W),
	P(REMOTE_PROC_DOMAIN_GET_DISK_ERRORS, "virDomainGetDiskErrors",
	    ARGS(remote_domain_get_disk_errors_args), RET(remote_domain_get_disk_errors_ret),
	    drv_domain_get_disk_errors, 0),	/* read-only connections may ask */
	P(REMOTE_PROC_DOMAIN_OPEN_CONSOLE, "virDomainOpenConsole",
	    ARGS(remote_domain_open_console_args), NONE, drv_domain_open_console, W),
	/* guest time: through a guest agent, which kvmm guests lack */
	P(REMOTE_PROC_DOMAIN_GET_TIME, "virDomainGetTime", ARGS(remote_domain_get_time_args),
		RET(remote_domain_get_time_ret), drv_domain_get_time, W),
	P(REMOTE_PROC_DOMAIN_SET_TIME, "virDomainSetTime", ARGS(remote_domain_set_time_args), NONE,
		drv_domain_set_time, W),
	/* cgroup tunables: schedinfo, memtune */
	P(REMOTE_PROC_DOMAIN_GET_SCHEDULER_TYPE, "virDomainGetSchedulerType",
		ARGS(remote_domain_get_scheduler_type_args), RET(remote_domain_get_scheduler_type_ret),
		drv_domain_get_scheduler_type, 0),
	P(REMOTE_PROC_DOMAIN_GET_SCHEDULER_PARAMETERS, "virDomainGetSchedulerParameters",
		ARGS(remote_domain_get_scheduler_parameters_args),
		RET(remote_domain_get_scheduler_parameters_ret), drv_domain_get_scheduler_parameters, 0),
	P(REMOTE_PROC_DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS, "virDomainGetSchedulerParametersFlags",
		ARGS(remote_domain_get_scheduler_parameters_flags_args),
		RET(remote_domain_get_scheduler_parameters_flags_ret),
		drv_domain_get_scheduler_parameters_flags, 0),
	P(REMOTE_PROC_DOMAIN_SET_SCHEDULER_PARAMETERS, "virDomainSetSchedulerParameters",
		ARGS(remote_domain_set_scheduler_parameters_args), NONE,
		drv_domain_set_scheduler_parameters, W),
	P(REMOTE_PROC_DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS, "virDomainSetSchedulerParametersFlags",
		ARGS(remote_domain_set_scheduler_parameters_flags_args), NONE,
		drv_domain_set_scheduler_parameters_flags, W),
	P(REMOTE_PROC_DOMAIN_GET_MEMORY_PARAMETERS, "virDomainGetMemoryParameters",
		ARGS(remote_domain_get_memory_parameters_args),
		RET(remote_domain_get_memory_parameters_ret), drv_domain_get_memory_parameters, 0),
	P(REMOTE_PROC_DOMAIN_SET_MEMORY_PARAMETERS, "virDomainSetMemoryParameters",
		ARGS(remote_domain_set_memory_parameters_args), NONE,
		drv_domain_set_memory_parameters, W),
#undef W

	/* host */
	P(REMOTE_PROC_NODE_GET_INFO, "virNodeGetInfo", NONE, RET(remote_node_get_info_ret),
		drv_node_get_info, 0),

	/* host and capabilities */
	P(REMOTE_PROC_CONNECT_GET_CAPABILITIES, "virConnectGetCapabilities", NONE,
		RET(remote_connect_get_capabilities_ret), drv_connect_get_capabilities, 0),
	P(REMOTE_PROC_CONNECT_GET_DOMAIN_CAPABILITIES, "virConnectGetDomainCapabilities",
		ARGS(remote_connect_get_domain_capabilities_args),
		RET(remote_connect_get_domain_capabilities_ret), drv_connect_get_domain_capabilities, 0),
	P(REMOTE_PROC_CONNECT_GET_MAX_VCPUS, "virConnectGetMaxVcpus",
		ARGS(remote_connect_get_max_vcpus_args), RET(remote_connect_get_max_vcpus_ret),
		drv_connect_get_max_vcpus, 0),
	P(REMOTE_PROC_CONNECT_GET_SYSINFO, "virConnectGetSysinfo",
		ARGS(remote_connect_get_sysinfo_args), RET(remote_connect_get_sysinfo_ret),
		drv_connect_get_sysinfo, 0),
	P(REMOTE_PROC_NODE_GET_CPU_STATS, "virNodeGetCPUStats",
		ARGS(remote_node_get_cpu_stats_args), RET(remote_node_get_cpu_stats_ret),
		drv_node_get_cpu_stats, 0),
	P(REMOTE_PROC_NODE_GET_MEMORY_STATS, "virNodeGetMemoryStats",
		ARGS(remote_node_get_memory_stats_args), RET(remote_node_get_memory_stats_ret),
		drv_node_get_memory_stats, 0),
	P(REMOTE_PROC_NODE_GET_CELLS_FREE_MEMORY, "virNodeGetCellsFreeMemory",
		ARGS(remote_node_get_cells_free_memory_args), RET(remote_node_get_cells_free_memory_ret),
		drv_node_get_cells_free_memory, 0),
	P(REMOTE_PROC_NODE_GET_FREE_MEMORY, "virNodeGetFreeMemory", NONE,
		RET(remote_node_get_free_memory_ret), drv_node_get_free_memory, 0),
	P(REMOTE_PROC_NODE_GET_FREE_PAGES, "virNodeGetFreePages",
		ARGS(remote_node_get_free_pages_args), RET(remote_node_get_free_pages_ret),
		drv_node_get_free_pages, 0),
	P(REMOTE_PROC_NODE_GET_CPU_MAP, "virNodeGetCPUMap",
		ARGS(remote_node_get_cpu_map_args), RET(remote_node_get_cpu_map_ret),
		drv_node_get_cpu_map, 0),
	P(REMOTE_PROC_CONNECT_REGISTER_CLOSE_CALLBACK, "virConnectRegisterCloseCallback", NONE,
		NONE, drv_connect_register_close_callback, 0),
	P(REMOTE_PROC_CONNECT_UNREGISTER_CLOSE_CALLBACK, "virConnectUnregisterCloseCallback",
		NONE, NONE, drv_connect_unregister_close_callback, 0),

	/* the host CPU */
	P(REMOTE_PROC_CONNECT_GET_CPU_MODEL_NAMES, "virConnectGetCPUModelNames",
		ARGS(remote_connect_get_cpu_model_names_args),
		RET(remote_connect_get_cpu_model_names_ret), drv_connect_get_cpu_model_names, 0),
	P(REMOTE_PROC_CONNECT_COMPARE_CPU, "virConnectCompareCPU",
		ARGS(remote_connect_compare_cpu_args), RET(remote_connect_compare_cpu_ret),
		drv_connect_compare_cpu, 0),
	P(REMOTE_PROC_CONNECT_BASELINE_CPU, "virConnectBaselineCPU",
		ARGS(remote_connect_baseline_cpu_args), RET(remote_connect_baseline_cpu_ret),
		drv_connect_baseline_cpu, 0),
	P(REMOTE_PROC_CONNECT_COMPARE_HYPERVISOR_CPU, "virConnectCompareHypervisorCPU",
		ARGS(remote_connect_compare_hypervisor_cpu_args),
		RET(remote_connect_compare_hypervisor_cpu_ret), drv_connect_compare_hypervisor_cpu, 0),
	P(REMOTE_PROC_CONNECT_BASELINE_HYPERVISOR_CPU, "virConnectBaselineHypervisorCPU",
		ARGS(remote_connect_baseline_hypervisor_cpu_args),
		RET(remote_connect_baseline_hypervisor_cpu_ret), drv_connect_baseline_hypervisor_cpu, 0),

	/* statistics of running domains */
	P(REMOTE_PROC_DOMAIN_GET_VCPUS, "virDomainGetVcpus", ARGS(remote_domain_get_vcpus_args),
		RET(remote_domain_get_vcpus_ret), drv_domain_get_vcpus, 0),
	P(REMOTE_PROC_DOMAIN_BLOCK_STATS, "virDomainBlockStats", ARGS(remote_domain_block_stats_args),
		RET(remote_domain_block_stats_ret), drv_domain_block_stats, 0),
	P(REMOTE_PROC_DOMAIN_BLOCK_STATS_FLAGS, "virDomainBlockStatsFlags",
		ARGS(remote_domain_block_stats_flags_args), RET(remote_domain_block_stats_flags_ret),
		drv_domain_block_stats_flags, 0),
	P(REMOTE_PROC_DOMAIN_INTERFACE_STATS, "virDomainInterfaceStats",
		ARGS(remote_domain_interface_stats_args), RET(remote_domain_interface_stats_ret),
		drv_domain_interface_stats, 0),
	P(REMOTE_PROC_DOMAIN_GET_BLOCK_INFO, "virDomainGetBlockInfo",
		ARGS(remote_domain_get_block_info_args), RET(remote_domain_get_block_info_ret),
		drv_domain_get_block_info, 0),
	P(REMOTE_PROC_DOMAIN_MEMORY_STATS, "virDomainMemoryStats",
		ARGS(remote_domain_memory_stats_args), RET(remote_domain_memory_stats_ret),
		drv_domain_memory_stats, 0),
	P(REMOTE_PROC_DOMAIN_GET_CPU_STATS, "virDomainGetCPUStats",
		ARGS(remote_domain_get_cpu_stats_args), RET(remote_domain_get_cpu_stats_ret),
		drv_domain_get_cpu_stats, 0),
	P(REMOTE_PROC_CONNECT_GET_ALL_DOMAIN_STATS, "virConnectGetAllDomainStats",
		ARGS(remote_connect_get_all_domain_stats_args),
		RET(remote_connect_get_all_domain_stats_ret), drv_connect_get_all_domain_stats, 0),

	/* events */
	P(REMOTE_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
		"virConnectDomainEventRegisterAny",
		ARGS(remote_connect_domain_event_callback_register_any_args),
		RET(remote_connect_domain_event_callback_register_any_ret),
		drv_connect_domain_event_callback_register_any, 0),
	P(REMOTE_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY,
		"virConnectDomainEventDeregisterAny",
		ARGS(remote_connect_domain_event_callback_deregister_any_args), NONE,
		drv_connect_domain_event_callback_deregister_any, 0),
	/* The legacy form, for clients that see feature 14 as absent. */
	P(REMOTE_PROC_CONNECT_DOMAIN_EVENT_REGISTER_ANY, "virConnectDomainEventRegisterAny",
		ARGS(remote_connect_domain_event_register_any_args), NONE,
		drv_connect_domain_event_register_any, 0),
	P(REMOTE_PROC_CONNECT_DOMAIN_EVENT_DEREGISTER_ANY, "virConnectDomainEventDeregisterAny",
		ARGS(remote_connect_domain_event_deregister_any_args), NONE,
		drv_connect_domain_event_deregister_any, 0),

	/* save and restore (domain_save.c) */
	P(REMOTE_PROC_DOMAIN_SAVE, "virDomainSave", ARGS(remote_domain_save_args), NONE,
		drv_domain_save, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_SAVE_FLAGS, "virDomainSaveFlags", ARGS(remote_domain_save_flags_args),
		NONE, drv_domain_save_flags, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_RESTORE, "virDomainRestore", ARGS(remote_domain_restore_args), NONE,
		drv_domain_restore, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_RESTORE_FLAGS, "virDomainRestoreFlags",
		ARGS(remote_domain_restore_flags_args), NONE, drv_domain_restore_flags, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_SAVE_IMAGE_GET_XML_DESC, "virDomainSaveImageGetXMLDesc",
		ARGS(remote_domain_save_image_get_xml_desc_args),
		RET(remote_domain_save_image_get_xml_desc_ret), drv_domain_save_image_get_xml_desc, 0),
	P(REMOTE_PROC_DOMAIN_SAVE_IMAGE_DEFINE_XML, "virDomainSaveImageDefineXML",
		ARGS(remote_domain_save_image_define_xml_args), NONE, drv_domain_save_image_define_xml,
		RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_SAVE_PARAMS, "virDomainSaveParams", ARGS(remote_domain_save_params_args),
		NONE, drv_domain_save_params, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_RESTORE_PARAMS, "virDomainRestoreParams",
		ARGS(remote_domain_restore_params_args), NONE, drv_domain_restore_params,
		RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_MANAGED_SAVE, "virDomainManagedSave", ARGS(remote_domain_flags_args),
		NONE, drv_domain_managed_save, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_MANAGED_SAVE_REMOVE, "virDomainManagedSaveRemove",
		ARGS(remote_domain_flags_args), NONE, drv_domain_managed_save_remove, RPC_PROC_MUTATING),

	/* migration (domain_migrate.c) */
	P(REMOTE_PROC_DOMAIN_MIGRATE_BEGIN3_PARAMS, "virDomainMigrateBegin3Params",
		ARGS(remote_domain_migrate_begin3_params_args),
		RET(remote_domain_migrate_begin3_params_ret), drv_domain_migrate_begin3_params,
		RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_MIGRATE_PREPARE3_PARAMS, "virDomainMigratePrepare3Params",
		ARGS(remote_domain_migrate_prepare3_params_args),
		RET(remote_domain_migrate_prepare3_params_ret), drv_domain_migrate_prepare3_params,
		RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_MIGRATE_PERFORM3_PARAMS, "virDomainMigratePerform3Params",
		ARGS(remote_domain_migrate_perform3_params_args),
		RET(remote_domain_migrate_perform3_params_ret), drv_domain_migrate_perform3_params,
		RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_MIGRATE_FINISH3_PARAMS, "virDomainMigrateFinish3Params",
		ARGS(remote_domain_migrate_finish3_params_args),
		RET(remote_domain_migrate_finish3_params_ret), drv_domain_migrate_finish3_params,
		RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_MIGRATE_CONFIRM3_PARAMS, "virDomainMigrateConfirm3Params",
		ARGS(remote_domain_migrate_confirm3_params_args), NONE,
		drv_domain_migrate_confirm3_params, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_MIGRATE_START_POST_COPY, "virDomainMigrateStartPostCopy",
		ARGS(remote_domain_migrate_start_post_copy_args), NONE,
		drv_domain_migrate_start_post_copy, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_MIGRATE_SET_MAX_SPEED, "virDomainMigrateSetMaxSpeed",
		ARGS(remote_domain_migrate_set_max_speed_args), NONE, drv_domain_migrate_set_max_speed,
		RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_MIGRATE_GET_MAX_SPEED, "virDomainMigrateGetMaxSpeed",
		ARGS(remote_domain_migrate_get_max_speed_args),
		RET(remote_domain_migrate_get_max_speed_ret), drv_domain_migrate_get_max_speed, 0),
	P(REMOTE_PROC_DOMAIN_MIGRATE_SET_MAX_DOWNTIME, "virDomainMigrateSetMaxDowntime",
		ARGS(remote_domain_migrate_set_max_downtime_args), NONE,
		drv_domain_migrate_set_max_downtime, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_MIGRATE_GET_MAX_DOWNTIME, "virDomainMigrateGetMaxDowntime",
		ARGS(remote_domain_migrate_get_max_downtime_args),
		RET(remote_domain_migrate_get_max_downtime_ret), drv_domain_migrate_get_max_downtime, 0),

	/* a long job's progress and abort (domain_job.c) */
	P(REMOTE_PROC_DOMAIN_GET_JOB_INFO, "virDomainGetJobInfo",
		ARGS(remote_domain_get_job_info_args), RET(remote_domain_get_job_info_ret),
		drv_domain_get_job_info, 0),
	P(REMOTE_PROC_DOMAIN_GET_JOB_STATS, "virDomainGetJobStats",
		ARGS(remote_domain_get_job_stats_args), RET(remote_domain_get_job_stats_ret),
		drv_domain_get_job_stats, 0),
	P(REMOTE_PROC_DOMAIN_ABORT_JOB, "virDomainAbortJob", ARGS(remote_domain_abort_job_args),
		NONE, drv_domain_abort_job, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_ABORT_JOB_FLAGS, "virDomainAbortJobFlags",
		ARGS(remote_domain_abort_job_flags_args), NONE, drv_domain_abort_job_flags,
		RPC_PROC_MUTATING),

	/* snapshots (domain_snapshot.c) */
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_CREATE_XML, "virDomainSnapshotCreateXML",
		ARGS(remote_domain_snapshot_create_xml_args), RET(remote_domain_snapshot_create_xml_ret),
		drv_domain_snapshot_create_xml, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_GET_XML_DESC, "virDomainSnapshotGetXMLDesc",
		ARGS(remote_domain_snapshot_get_xml_desc_args),
		RET(remote_domain_snapshot_get_xml_desc_ret), drv_domain_snapshot_get_xml_desc, 0),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_NUM, "virDomainSnapshotNum",
		ARGS(remote_domain_snapshot_num_args), RET(remote_domain_snapshot_num_ret),
		drv_domain_snapshot_num, 0),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_LIST_NAMES, "virDomainSnapshotListNames",
		ARGS(remote_domain_snapshot_list_names_args),
		RET(remote_domain_snapshot_list_names_ret), drv_domain_snapshot_list_names, 0),
	P(REMOTE_PROC_DOMAIN_LIST_ALL_SNAPSHOTS, "virDomainListAllSnapshots",
		ARGS(remote_domain_list_all_snapshots_args),
		RET(remote_domain_list_all_snapshots_ret), drv_domain_list_all_snapshots, 0),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_NUM_CHILDREN, "virDomainSnapshotNumChildren",
		ARGS(remote_domain_snapshot_num_children_args),
		RET(remote_domain_snapshot_num_children_ret), drv_domain_snapshot_num_children, 0),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_LIST_CHILDREN_NAMES, "virDomainSnapshotListChildrenNames",
		ARGS(remote_domain_snapshot_list_children_names_args),
		RET(remote_domain_snapshot_list_children_names_ret),
		drv_domain_snapshot_list_children_names, 0),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_LIST_ALL_CHILDREN, "virDomainSnapshotListAllChildren",
		ARGS(remote_domain_snapshot_list_all_children_args),
		RET(remote_domain_snapshot_list_all_children_ret),
		drv_domain_snapshot_list_all_children, 0),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_LOOKUP_BY_NAME, "virDomainSnapshotLookupByName",
		ARGS(remote_domain_snapshot_lookup_by_name_args),
		RET(remote_domain_snapshot_lookup_by_name_ret), drv_domain_snapshot_lookup_by_name, 0),
	/* Write access, as proc_names.c has it from libvirt. */
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_CURRENT, "virDomainSnapshotCurrent",
		ARGS(remote_domain_snapshot_current_args), RET(remote_domain_snapshot_current_ret),
		drv_domain_snapshot_current, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_HAS_CURRENT_SNAPSHOT, "virDomainHasCurrentSnapshot",
		ARGS(remote_domain_has_current_snapshot_args),
		RET(remote_domain_has_current_snapshot_ret), drv_domain_has_current_snapshot, 0),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_GET_PARENT, "virDomainSnapshotGetParent",
		ARGS(remote_domain_snapshot_get_parent_args),
		RET(remote_domain_snapshot_get_parent_ret), drv_domain_snapshot_get_parent, 0),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_IS_CURRENT, "virDomainSnapshotIsCurrent",
		ARGS(remote_domain_snapshot_is_current_args),
		RET(remote_domain_snapshot_is_current_ret), drv_domain_snapshot_is_current, 0),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_HAS_METADATA, "virDomainSnapshotHasMetadata",
		ARGS(remote_domain_snapshot_has_metadata_args),
		RET(remote_domain_snapshot_has_metadata_ret), drv_domain_snapshot_has_metadata, 0),
	P(REMOTE_PROC_DOMAIN_REVERT_TO_SNAPSHOT, "virDomainRevertToSnapshot",
		ARGS(remote_domain_revert_to_snapshot_args), NONE, drv_domain_revert_to_snapshot,
		RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_SNAPSHOT_DELETE, "virDomainSnapshotDelete",
		ARGS(remote_domain_snapshot_delete_args), NONE, drv_domain_snapshot_delete,
		RPC_PROC_MUTATING),

	/* vCPUs (domain_vcpu.c) */
	P(REMOTE_PROC_DOMAIN_SET_VCPUS, "virDomainSetVcpus", ARGS(remote_domain_set_vcpus_args),
		NONE, drv_domain_set_vcpus, RPC_PROC_MUTATING),
	P(REMOTE_PROC_DOMAIN_SET_VCPUS_FLAGS, "virDomainSetVcpusFlags",
		ARGS(remote_domain_set_vcpus_flags_args), NONE, drv_domain_set_vcpus_flags, RPC_PROC_MUTATING),

};

const struct rpc_proc *rpc_proc_lookup(int proc)
{
	/* CLIENT: proc comes straight from the header; index only within
	 * the table, and holes (api == NULL) are not ours. */
	if (proc < 0 || (size_t)proc >= G_N_ELEMENTS(procs) || !procs[proc].api)
		return NULL;
	return &procs[proc];
}

static void send_error(struct rpc_conn *conn, const struct rpc_header *call)
{
	const struct drv_error *err = drv_error_last();
	GBytes *pkt;

	if (err)
		pr_debug("client %u: serial %u proc %d: error %d: %s", conn->id,
			 call->serial, call->proc, err->code, err->message);
	pkt = rpc_reply_error(call, err);
	if (pkt)
		conn->send(conn, pkt);
	drv_error_reset();
}

/* libvirt's error domain for an API's VIR_ERR_NO_SUPPORT: that of the
 * libvirt source file the API lives in.  Snapshots, checkpoints and node
 * devices have their own files; the host and domain APIs (libvirt-host.c and
 * libvirt-domain.c) both say DOMAIN; the connection's own (libvirt.c)
 * are all implemented here. */
static int api_error_domain(const char *api)
{
	if (strstr(api, "Snapshot"))
		return VIR_FROM_DOMAIN_SNAPSHOT;
	if (strstr(api, "Checkpoint"))
		return VIR_FROM_DOMAIN_CHECKPOINT;
	if (g_str_has_prefix(api, "virNodeDevice"))
		return VIR_FROM_NODEDEV;
	return VIR_FROM_DOMAIN;
}

/* A procedure we do not run ourselves (and forward.c does not relay):
 * libvirt's answers, in libvirt's order.  Read-only clients are refused
 * a mutating API first, as libvirt checks write access before asking
 * its driver; then VIR_ERR_NO_SUPPORT with the API's name, as libvirt's
 * drivers answer for an API they lack.  A number that names no API
 * (unknown, an event message, an authentication step we do not offer)
 * gets libvirtd's "unknown procedure", which clients also read as
 * NO_SUPPORT. */
static void refuse_unimplemented(struct rpc_conn *conn, const struct rpc_header *hdr,
				 const struct rpc_proc *p)
{
	const struct rpc_proc_name *n = rpc_proc_name(hdr->proc);
	const char *api = p ? p->api : n ? n->api : NULL;
	bool mutating = p ? (p->flags & RPC_PROC_MUTATING) : n && (n->flags & RPC_PROC_MUTATING);

	if (!api) {
		drv_error_report(VIR_ERR_RPC, "unknown procedure: %d", hdr->proc);
	} else if (!conn->open) {
		drv_error_report_full(VIR_FROM_REMOTE, VIR_ERR_INTERNAL_ERROR, "connection not open");
	} else if (conn->readonly && mutating) {
		drv_error_report_full(VIR_FROM_DOMAIN, VIR_ERR_OPERATION_DENIED,
				      "read only access prevents %s", api);
	} else {
		pr_debug("client %u: %s (%d) is not supported", conn->id, api, hdr->proc);
		drv_error_report_full(api_error_domain(api), VIR_ERR_NO_SUPPORT, "%s", api);
	}
	send_error(conn, hdr);
}

/* A call to the remote program: look up, check, decode, run, answer. */
static void dispatch_call(struct rpc_conn *conn, const struct rpc_header *hdr,
			  const uint8_t *pkt, size_t len)
{
	const struct rpc_proc *p = rpc_proc_lookup(hdr->proc);
	struct rpc_header reply = *hdr;
	g_autofree void *args = NULL;
	g_autofree void *ret = NULL;
	GBytes *out;
	int rc;

	if (!p || !p->fn) {
		refuse_unimplemented(conn, hdr, p);
		return;
	}
	pr_debug("client %u: call %s (%d) serial %u", conn->id, p->api, hdr->proc, hdr->serial);
	if (!conn->open && !(p->flags & RPC_PROC_BEFORE_OPEN)) {
		drv_error_report_full(VIR_FROM_REMOTE, VIR_ERR_INTERNAL_ERROR, "connection not open");
		send_error(conn, hdr);
		return;
	}
	if (conn->readonly && (p->flags & RPC_PROC_MUTATING)) {
		drv_error_report_full(VIR_FROM_DOMAIN, VIR_ERR_OPERATION_DENIED,
				      "read only access prevents %s", p->api);
		send_error(conn, hdr);
		return;
	}

	args = g_malloc0(MAX(p->args_size, 1));
	ret = g_malloc0(MAX(p->ret_size, 1));
	if (rpc_msg_decode_body(pkt, len, p->args_filter, args) < 0) {
		send_error(conn, hdr);
		return;
	}
	conn->call = *hdr;
	rc = p->fn(conn, p->args_size ? args : NULL, ret);
	xdr_free(p->args_filter, args);
	if (rc < 0) {
		rpc_stream_discard_pending(conn);
		xdr_free(p->ret_filter, ret);
		send_error(conn, hdr);
		return;
	}
	reply.type = RPC_REPLY;
	reply.status = RPC_OK;
	out = rpc_msg_encode(&reply, p->ret_filter, ret);
	xdr_free(p->ret_filter, ret);
	if (!out) {
		send_error(conn, hdr);
		return;
	}
	conn->send(conn, out);
}

static void dispatch_keepalive(struct rpc_conn *conn, const struct rpc_header *hdr)
{
	/* Only PING needs an answer; a PONG has already counted as a sign
	 * of life by arriving at all. */
	if (hdr->type == RPC_MESSAGE && hdr->proc == KEEPALIVE_PROC_PING) {
		GBytes *pong = rpc_keepalive_packet(KEEPALIVE_PROC_PONG);

		if (pong)
			conn->send(conn, pong);
	}
}

void rpc_conn_gone(struct rpc_conn *conn)
{
	rpc_fwd_conn_gone(conn);
	events_conn_gone(conn);
	autodestroy_conn_gone(conn);
	migrate_conn_gone(conn);
	rpc_streams_close_all(conn);
}

bool rpc_dispatch_is_call(const uint8_t *pkt, size_t len)
{
	struct rpc_header hdr;
	bool call;

	if (rpc_msg_decode_header(pkt, len, &hdr) < 0) {
		drv_error_reset();
		return false;
	}
	call = hdr.type == RPC_CALL && hdr.prog == REMOTE_PROGRAM &&
	       hdr.vers == REMOTE_PROTOCOL_VERSION && hdr.status == RPC_OK;
	return call;
}

int rpc_dispatch(struct rpc_conn *conn, const uint8_t *pkt, size_t len)
{
	struct rpc_header hdr;

	drv_error_reset();
	if (rpc_msg_decode_header(pkt, len, &hdr) < 0) {
		pr_warn("client %u: %s: dropping it", conn->id, drv_error_last()->message);
		drv_error_reset();
		return -1;
	}

	if (hdr.prog == KEEPALIVE_PROGRAM && hdr.vers == KEEPALIVE_PROTOCOL_VERSION &&
	    hdr.type == RPC_MESSAGE) {
		dispatch_keepalive(conn, &hdr);
		return 0;
	}

	/* CLIENT: type, program, version and status are all client-chosen;
	 * anything but a plain call to our program gets an error reply if
	 * it expects a reply at all, and is otherwise ignored. */
	switch (hdr.type) {
	case RPC_CALL:
		break;
	case RPC_STREAM:
	case RPC_STREAM_HOLE:
		if (hdr.prog != REMOTE_PROGRAM || hdr.vers != REMOTE_PROTOCOL_VERSION)
			return 0;
		/* Volume uploads and downloads are the storage daemon's;
		 * our own streams (consoles) take no holes. */
		if (!rpc_fwd_stream(conn, &hdr, pkt, len) && hdr.type == RPC_STREAM)
			rpc_stream_input(conn, &hdr, pkt, len);
		return 0;
	case RPC_CALL_WITH_FDS:
		/* The descriptors would follow in the byte stream; we never
		 * offered FD passing (feature 8), so we cannot resync. */
		pr_warn("client %u: sent file descriptors, which virtkvmmd does not accept: dropping it",
			conn->id);
		return -1;
	default:
		pr_debug("client %u: ignoring %s packet for program 0x%x proc %d", conn->id,
			 rpc_msg_type_name(hdr.type), hdr.prog, hdr.proc);
		return 0;
	}
	if (hdr.prog != REMOTE_PROGRAM || hdr.vers != REMOTE_PROTOCOL_VERSION) {
		drv_error_report(VIR_ERR_RPC, "Cannot find program %d version %d", hdr.prog, hdr.vers);
		send_error(conn, &hdr);
		return 0;
	}
	if (hdr.status != RPC_OK) {
		drv_error_report(VIR_ERR_RPC, "Unexpected message status %u", hdr.status);
		send_error(conn, &hdr);
		return 0;
	}
	dispatch_call(conn, &hdr, pkt, len);
	return 0;
}
