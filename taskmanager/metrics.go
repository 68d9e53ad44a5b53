package taskmanager

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirstream/weir/internal/metrics"
)

var (
	slotsDesc = prometheus.NewDesc("weir_taskmanager_slots", "Task slots the TaskManager offers.", []string{"task_manager"}, nil)
	tasksDesc = prometheus.NewDesc("weir_taskmanager_tasks", "Subtasks deployed on the TaskManager.", []string{"task_manager"}, nil)
)

// Collector returns a Prometheus collector of the TaskManager's metrics and
// its tasks', read at scrape time (see internal/metrics).
func (tm *TaskManager) Collector() prometheus.Collector { return (*tmCollector)(tm) }

type tmCollector TaskManager

func (c *tmCollector) Describe(chan<- *prometheus.Desc) {} // unchecked: user metrics vary

func (c *tmCollector) Collect(ch chan<- prometheus.Metric) {
	tm := (*TaskManager)(c)
	tasks := tm.metricTasks()
	ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.GaugeValue, float64(tm.cfg.Slots), tm.cfg.ID)
	ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(tm.taskCount()), tm.cfg.ID)
	(&metrics.TaskCollector{Tasks: func() []metrics.TaskInfo { return tasks }}).Collect(ch)
}

// metricTasks lists the tasks that have started.
func (tm *TaskManager) metricTasks() []metrics.TaskInfo {
	tm.mu.Lock()
	rts := make([]*runningTask, 0, len(tm.tasks))
	for _, rt := range tm.tasks {
		rts = append(rts, rt)
	}
	tm.mu.Unlock()
	out := make([]metrics.TaskInfo, 0, len(rts))
	for _, rt := range rts {
		rt.mu.Lock()
		task := rt.task
		rt.mu.Unlock()
		if task != nil {
			out = append(out, metrics.TaskInfo{JobID: rt.key.job, JobName: rt.jobName, TaskManager: tm.cfg.ID, Task: task})
		}
	}
	return out
}
