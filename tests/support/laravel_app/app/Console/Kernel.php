<?php

namespace App\Console;

use Illuminate\Console\Scheduling\Schedule;
use Illuminate\Foundation\Console\Kernel as ConsoleKernel;

class Kernel extends ConsoleKernel
{
    protected $commands = [
        Commands\RecordTick::class,
    ];

    protected function schedule(Schedule $schedule)
    {
        $schedule->command('app:tick')->everyMinute();
    }

    protected function commands()
    {
        // Listed above rather than discovered with $this->load(): discovery reads the
        // application namespace from composer.json, which this app does not ship.
        require base_path('routes/console.php');
    }
}
