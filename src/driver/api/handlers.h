/* The remote procedures' handlers, as named by the dispatch table
 * (rpc/dispatch.c).  Each receives the decoded *_args body (or NULL) and
 * fills the zeroed *_ret body, whose strings and arrays it allocates with
 * malloc (the RPC layer frees them with xdr_free).  0, or -1 with the
 * error reported. */
#ifndef KVMM_DRV_HANDLERS_H
#define KVMM_DRV_HANDLERS_H

#include "rpc/dispatch.h"

/* connect.c: the connection itself */
int drv_auth_list(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_open(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_close(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_supports_feature(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_get_type(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_get_version(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_get_lib_version(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_get_hostname(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_get_uri(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_is_secure(struct rpc_conn *conn, void *args, void *ret);

/* list.c: listing and counting domains */
int drv_connect_list_all_domains(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_num_of_domains(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_list_domains(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_num_of_defined_domains(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_list_defined_domains(struct rpc_conn *conn, void *args, void *ret);

/* domain_api.c: define, undefine, lookup */
int drv_domain_define_xml(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_define_xml_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_undefine(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_undefine_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_lookup_by_name(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_lookup_by_uuid(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_lookup_by_id(struct rpc_conn *conn, void *args, void *ret);

/* domain_info.c: queries about one domain, and autostart */
int drv_domain_get_xml_desc(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_info(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_state(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_autostart(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_autostart(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_is_active(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_is_persistent(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_is_updated(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_has_managed_save_image(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_os_type(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_max_memory(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_vcpus_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_max_vcpus(struct rpc_conn *conn, void *args, void *ret);

/* domain_edit.c: metadata and rename */
int drv_domain_set_metadata(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_metadata(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_rename(struct rpc_conn *conn, void *args, void *ret);

/* events.c: domain event callbacks */
int drv_connect_domain_event_callback_register_any(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_domain_event_callback_deregister_any(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_domain_event_register_any(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_domain_event_deregister_any(struct rpc_conn *conn, void *args, void *ret);

/* node.c: the host */
int drv_node_get_info(struct rpc_conn *conn, void *args, void *ret);

/* domain_lifecycle.c: start, stop, pause, reset */
int drv_domain_create(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_create_xml(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_create_with_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_destroy(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_destroy_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_shutdown(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_shutdown_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_suspend(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_resume(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_reset(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_reboot(struct rpc_conn *conn, void *args, void *ret);

/* domain_stats.c: statistics of running domains */
int drv_domain_get_vcpus(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_memory_stats(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_block_stats(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_block_stats_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_interface_stats(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_block_info(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_cpu_stats(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_get_all_domain_stats(struct rpc_conn *conn, void *args, void *ret);

/* domain_block.c: changing a running domain's disks */
/* domain_hotplug.c */
int drv_domain_attach_device(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_attach_device_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_detach_device(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_detach_device_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_update_device_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_detach_device_alias(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_block_resize(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_disk_errors(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_memory(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_memory_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_vcpus(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_vcpus_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_max_memory(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_memory_stats_period(struct rpc_conn *conn, void *args, void *ret);

/* console.c */
int drv_domain_open_console(struct rpc_conn *conn, void *args, void *ret);

/* domain_sched.c */
int drv_domain_get_scheduler_type(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_scheduler_parameters(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_scheduler_parameters_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_scheduler_parameters(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_scheduler_parameters_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_memory_parameters(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_memory_parameters(struct rpc_conn *conn, void *args, void *ret);

/* domain_time.c */
int drv_domain_get_time(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_set_time(struct rpc_conn *conn, void *args, void *ret);

/* domain_save.c: save, restore, managed save */
int drv_domain_save(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_save_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_restore(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_restore_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_save_image_get_xml_desc(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_save_image_define_xml(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_save_params(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_restore_params(struct rpc_conn *conn, void *args, void *ret);
/* domain_job.c: a long job's progress and abort */
int drv_domain_get_job_info(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_get_job_stats(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_abort_job(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_abort_job_flags(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_managed_save(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_managed_save_remove(struct rpc_conn *conn, void *args, void *ret);

/* domain_migrate.c: migration protocol v3 (both sides), speed and downtime */
int drv_domain_migrate_begin3_params(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_migrate_prepare3_params(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_migrate_perform3_params(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_migrate_finish3_params(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_migrate_confirm3_params(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_migrate_start_post_copy(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_migrate_set_max_speed(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_migrate_get_max_speed(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_migrate_set_max_downtime(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_migrate_get_max_downtime(struct rpc_conn *conn, void *args, void *ret);

/* domain_snapshot.c: snapshots */
int drv_domain_snapshot_create_xml(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_get_xml_desc(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_num(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_list_names(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_list_all_snapshots(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_num_children(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_list_children_names(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_list_all_children(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_lookup_by_name(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_current(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_has_current_snapshot(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_get_parent(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_is_current(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_has_metadata(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_revert_to_snapshot(struct rpc_conn *conn, void *args, void *ret);
int drv_domain_snapshot_delete(struct rpc_conn *conn, void *args, void *ret);

/* cpu.c */
int drv_connect_get_cpu_model_names(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_compare_cpu(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_baseline_cpu(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_compare_hypervisor_cpu(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_baseline_hypervisor_cpu(struct rpc_conn *conn, void *args, void *ret);

#endif
